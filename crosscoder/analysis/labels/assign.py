"""Label the candidates: what is measured once per analysis (`LabelBasis`), then one candidate at a time.

`prepare_labels` runs the trait prompts through the models (pos/neg latent activations and the ft persona vectors at
the lens hook; user persona-vector files win), matches every candidate's decoder directions against the persona
vectors (raw cosines and the joint least-squares coefficients of `unique_alignment`) and reads the said signal.
`label_candidate` turns those numbers and the candidate's text evidence into `TraitEvidence` per trait and the label;
it runs again for candidates whose steered generations arrive later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crosscoder.analysis.config import LabelConfig
from crosscoder.analysis.evidence.gather import CandidateDirections
from crosscoder.analysis.evidence.said import said_scores
from crosscoder.analysis.evidence.trait_prompts import PosNeg, pos_neg_acts
from crosscoder.analysis.labels.calibration import NullCalibration, load_calibration
from crosscoder.analysis.labels.decide import LabelRule, label_latent
from crosscoder.analysis.labels.profile import TraitProfile, build_profiles
from crosscoder.analysis.labels.signals import (
    LatentReading,
    TraitMeasures,
    TraitWords,
    check_persona_vectors,
    trait_evidence,
)
from crosscoder.analysis.labels.specific import generic_share, instruction_vocabulary, is_generic, specificity
from crosscoder.analysis.labels.words import keyword_content_words, keyword_words, template_words, trait_words
from crosscoder.analysis.records.candidate import Candidate, PosNegMeans
from crosscoder.personas.responses import ResponseConfig

if TYPE_CHECKING:
    from crosscoder.models.load import LoadedModel
    from crosscoder.personas.traits import Trait
    from crosscoder.personas.vectors import PersonaVectors
    from crosscoder.xc.model import Crosscoder


def _cos(a_ND: Tensor, v_D: Tensor) -> Tensor:
    a = a_ND / a_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return a @ (v_D / v_D.norm().clamp_min(1e-12))


def unique_alignment(a_ND: Tensor, unit_TD: Tensor) -> Tensor:
    """Each trait's coefficient ``[N, T]`` when each unit direction a_n is fit jointly by all unit persona vectors.

    Least squares a_n ~ sum_t beta_t v_t: beta_t is the part of the alignment with trait t that no other trait's
    vector explains (for a single trait it is the cosine). Persona vectors of related traits can be nearly collinear
    (sycophancy and over_enthusiastic ~0.94 on SmolLM2), so plain cosines cannot tell them apart; the joint fit
    gives a direction equal to one of them coefficient 1 for it and 0 for the other.
    """
    a = a_ND / a_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.linalg.lstsq(unit_TD.T.double(), a.T.double()).solution.T.float()  # [N, T]


def given_persona_vectors(model: LoadedModel, files: list[str]) -> dict[str, PersonaVectors]:
    """{trait: PersonaVectors} from user files, each checked against `model` (the ft model)."""
    from crosscoder.personas.vectors import PersonaVectors

    given: dict[str, PersonaVectors] = {}
    for path in files:
        pv = PersonaVectors.load(path)
        check_persona_vectors(pv, model)
        given[pv.trait] = pv
    return given


def vectors_for(
    store: dict[str, PersonaVectors], model: LoadedModel, trait: Trait, max_questions: int | None
) -> PersonaVectors:
    """`store[trait.name]`, computed (all layers, cached on disk) and checked when missing."""
    from crosscoder.personas.vectors import compute_persona_vectors

    if trait.name not in store:
        store[trait.name] = compute_persona_vectors(model, trait, max_questions=max_questions)
        check_persona_vectors(store[trait.name], model)
    return store[trait.name]


@dataclass
class LabelBasis:
    """What the labels measure once per analysis, for every candidate and trait."""

    traits: dict[str, Trait]
    pos_neg: dict[str, PosNeg]
    words: dict[str, TraitWords]
    measures: dict[str, list[TraitMeasures]]
    """Per trait, one entry per candidate (candidate order)."""
    vectors_ft: dict[str, PersonaVectors] = field(default_factory=dict)
    """Full per-layer ft persona vectors (user files, then those the causal checks compute)."""
    vectors_base: dict[str, PersonaVectors] = field(default_factory=dict)
    profiles: dict[str, TraitProfile] = field(default_factory=dict)
    """What each trait looks like in the base model, from its file alone (empty with ``labels.generated=false``)."""
    calibration: NullCalibration | None = None
    """The null-pair calibration (None with ``labels.calibration=none``)."""

    def threshold(self, cfg: LabelConfig) -> float:
        """The label threshold: ``labels.threshold``, raised to the largest null score when calibrated."""
        return max(cfg.threshold, self.calibration.threshold if self.calibration else 0.0)

    def rule(self, cfg: LabelConfig) -> LabelRule:
        """The label decision (`crosscoder.analysis.labels.decide`); strict (above every null score) when calibrated."""
        return LabelRule(list(cfg.weights), self.threshold(cfg), cfg.evidence_floor, cfg.min_kinds,
                         strict=self.calibration is not None)  # fmt: skip

    def warnings(self, cfg: LabelConfig) -> list[str]:
        """One line per trait the base model cannot separate (its labels are unreliable)."""
        return [
            f"trait {t}: the model's answers under its pos and neg instructions barely differ (separation "
            f"{p.separation:.2f} < {cfg.min_separation}); its labels are unreliable"
            for t, p in self.profiles.items()
            if p.separation < cfg.min_separation
        ]


def trait_word_lists(trait: Trait, template: frozenset[str], profile: TraitProfile | None) -> TraitWords:
    """What the lexical signals match for one trait: the profile's spoken words plus the content words of its
    keywords (when the file has them) for what a latent reads or writes and what a model says, the latter weighted by
    the profile's evidence weight when no keyword backs them. The instructions' contrast words are used only when
    there is nothing else, and then never against the logit lens (`TraitWords.lens`)."""
    spoken = list(profile.words) if profile else []
    keywords = keyword_words(trait, template) if trait.keywords else []
    words = sorted(set(spoken) | set(keyword_content_words(trait, template)))
    weight = profile.weight if profile and not trait.keywords else 1.0
    if not words:
        return TraitWords(trait_words(trait, template), None, None, weight, lens=False)
    return TraitWords(words, sorted(set(spoken) | set(keywords)), trait.keyword_regex(), weight)


def with_specificity(words: dict[str, TraitWords], traits: dict[str, Trait]) -> dict[str, TraitWords]:
    """Each trait's words weighted by how specific they are within the library (`specificity`), in place."""
    lists = {t: sorted(set(w.words) | set(w.spoken)) for t, w in words.items()}
    weights = specificity(lists, instruction_vocabulary(traits))
    for t, w in words.items():
        w.specific = weights[t]
    return words


def prepare_labels(
    cc: Crosscoder, models: list[LoadedModel], hooks: list[str], lens_idx: int, traits: dict[str, Trait],
    dirs: CandidateDirections, said_diff: dict[int, dict[str, Tensor]], cfg: LabelConfig,
) -> LabelBasis:  # fmt: skip
    """Trait prompts through the models, persona-vector alignment of the candidates' decoders and the said signal.

    The ft persona vectors at the lens hook come from the pos/neg forward passes (user files win); full per-layer
    vectors are computed only for the traits the causal checks score."""
    pv_ft = given_persona_vectors(models[-1], list(cfg.persona_vectors))
    profiles: dict[str, TraitProfile] = {}
    if cfg.generated:
        rc = ResponseConfig(n_questions=cfg.response_questions, n_pairs=cfg.response_pairs,
                            max_new_tokens=cfg.response_tokens)  # fmt: skip
        profiles = build_profiles(models[0], traits, rc, n_words=cfg.spoken_words)
    k = cfg.generated_examples
    generated = {t: {"pos": p.pos_texts[:k], "neg": p.neg_texts[:k]} for t, p in profiles.items()}
    pn = pos_neg_acts(cc, models, hooks, traits, cfg.questions, lens_idx, generated)
    template = template_words(models[-1].tokenizer)
    words = with_specificity({t: trait_word_lists(tr, template, profiles.get(t)) for t, tr in traits.items()}, traits)
    hook = hooks[lens_idx]
    names = list(traits)
    vec = {t: pv_ft[t].for_hook(hook).float() if t in pv_ft else pn[t].vector_D.float() for t in names}
    unit_TD = torch.stack([v / v.norm().clamp_min(1e-12) for v in vec.values()])
    beta_ft, beta_diff = unique_alignment(dirs.d_ft_ND, unit_TD), unique_alignment(dirs.d_diff_ND, unit_TD)
    said_T = said_scores(said_diff, torch.stack([pn[t].text_vector_D.float() for t in names]))
    measures: dict[str, list[TraitMeasures]] = {}
    for i, t in enumerate(names):
        cos_ft, cos_diff = _cos(dirs.d_ft_ND, unit_TD[i]), _cos(dirs.d_diff_ND, unit_TD[i])
        measures[t] = [
            TraitMeasures(
                cos_ft=float(cos_ft[n]),
                cos_diff=float(cos_diff[n]),
                spec_ft=float(beta_ft[n, i]),
                spec_diff=float(beta_diff[n, i]),
                pos=float(pn[t].pos_F[j]),
                neg=float(pn[t].neg_F[j]),
                said=float(said_T[j][i]) if j in said_T else 0.0,
            )  # fmt: skip
            for n, j in enumerate(dirs.latents)
        ]
    return LabelBasis(traits, pn, words, measures, vectors_ft=pv_ft, profiles=profiles,
                      calibration=load_calibration(cfg.calibration))  # fmt: skip


def label_candidate(c: Candidate, n: int, basis: LabelBasis, cfg: LabelConfig) -> None:
    """Fill candidate `c` (the `n`-th) with per-trait evidence, its label, best trait and runner-up (in place)."""
    measures = {t: basis.measures[t][n] for t in basis.traits}
    decide_label(c, measures, basis.words, cfg, basis)
    c.pos_neg = {
        t: PosNegMeans(float(basis.pos_neg[t].pos_F[c.latent]), float(basis.pos_neg[t].neg_F[c.latent]))
        for t in basis.traits
    }


def decide_label(
    c: Candidate, measures: dict[str, TraitMeasures], words: dict[str, TraitWords], cfg: LabelConfig,
    basis: LabelBasis,
) -> None:  # fmt: skip
    """The evidence, label, confidence, runner-up and false-label rate of `c` from its per-trait measures (in place;
    shared by the analysis and `crosscoder.analysis.labels.relabel`)."""
    steered, unsteered = c.steering.texts() if c.steering is not None else ([], [])
    reading = LatentReading(lens=c.logit_lens.get("diff"), contexts=c.top_examples, next_token=c.next_token_shift,
                            steered=steered, unsteered=unsteered, mean_act=float(c.mean_act_all or 0.0))  # fmt: skip
    ev = {t: trait_evidence(reading, measures[t], words[t], cfg.cosine_full, cfg.said_full) for t in measures}
    c.generic_share = round(generic_share(c.next_token_shift), 4) if c.next_token_shift is not None else None
    rule = basis.rule(cfg)
    generic = is_generic(c, cfg.generic_max, cfg.content_min)
    c.label, c.label_confidence, c.runner_up, c.runner_up_score = label_latent(ev, rule, generic)
    c.best_trait = max(ev, key=lambda t: ev[t].combined) if ev else None
    calib = basis.calibration
    c.label_false_rate = calib.false_label_rate(c.label_confidence) if calib and ev else None
    c.label_evidence = ev
