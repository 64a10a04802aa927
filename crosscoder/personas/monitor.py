"""Persona monitoring: project every token of a conversation on persona directions, per turn and over training.

    python -m crosscoder.personas.monitor --model organism:demo --chat chat.jsonl --trait cat_obsession --out DIR

API: :func:`project_conversations` (per-token projections of each conversation on each direction, position 0 left
out), :func:`calibrate` (an alert threshold per direction from the trait's positive and negative responses),
:func:`monitor_series` (the same projections for every checkpoint of a training series) and :func:`write_monitor`
(``traces.csv``, ``turns.csv``, ``summary.json``, ``directions.safetensors`` and a self-contained ``monitor.html``).

A projection is ⟨x_t, u⟩ for the residual activation x_t at the direction's hook and the unit direction u. A turn's
score is the mean over its content tokens; a turn *alerts* on a direction when its score is at or above the
direction's threshold. Only assistant turns alert (the thresholds are calibrated on
responses); every turn is scored. The threshold is calibrated on per-response mean projections of the trait's
``examples`` (pos and neg texts, each as the assistant's answer to one of the trait's extraction questions, so they
sit in the same context as a monitored chat; without examples, greedy answers to the extraction questions under the
pos and neg system prompts): the cut with the best balanced accuracy, in-sample.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from crosscoder.errors import ConfigError
from crosscoder.personas.directions import Calibration, Direction, check_directions
from crosscoder.personas.tokens import ChatTokens, Message, chat_tokens, hook_acts

log = logging.getLogger(__name__)


@dataclass
class TurnSummary:
    """One message of a conversation: its mean / max projection per direction and the directions that alert."""

    turn: int
    role: str
    n_tokens: int
    mean: dict[str, float]
    max: dict[str, float]
    alerts: list[str] = field(default_factory=list)


@dataclass
class ConversationTrace:
    """Per-token projections of one conversation (``proj_TK[0]`` is NaN: the attention sink is never scored)."""

    line: int
    """1-based line of the conversation in its chat file."""
    tokens: ChatTokens
    proj_TK: Tensor
    turns: list[TurnSummary]


@dataclass
class MonitorResult:
    """What the monitor measured for one model."""

    model: str
    model_hash: str
    directions: list[Direction]
    conversations: list[ConversationTrace]

    def alerts(self) -> list[tuple[int, int, str]]:
        """(line, turn, direction) for every alerting turn."""
        return [(c.line, t.turn, name) for c in self.conversations for t in c.turns for name in t.alerts]


ALERT_ROLES = ("assistant",)
"""Roles whose turns can alert: thresholds are calibrated on assistant responses (other turns are still scored)."""


def _turn_summaries(tokens: ChatTokens, proj_TK: Tensor, directions: list[Direction]) -> list[TurnSummary]:
    turn_T = torch.tensor(tokens.turn)
    turn_T[0] = -1  # position 0 is never part of a statistic
    out = []
    for i, msg in enumerate(tokens.messages):
        sel = proj_TK[turn_T == i]
        if sel.shape[0] == 0:
            continue
        mean = {d.name: float(sel[:, k].mean()) for k, d in enumerate(directions)}
        mx = {d.name: float(sel[:, k].max()) for k, d in enumerate(directions)}
        alerts = [
            d.name
            for d in directions
            if msg["role"] in ALERT_ROLES and d.threshold is not None and mean[d.name] >= d.threshold
        ]
        out.append(TurnSummary(i, msg["role"], int(sel.shape[0]), mean, mx, alerts))
    return out


def project_conversations(
    model: Any,
    conversations: list[list[Message]],
    directions: list[Direction],
    *,
    lines: list[int] | None = None,
    batch_size: int = 4,
    allow_other_model: bool = False,
) -> MonitorResult:
    """Per-token projections of every conversation on every direction, with per-turn summaries and alerts."""
    check_directions(model, directions, allow_other_model=allow_other_model)
    toks = [chat_tokens(model.tokenizer, conv) for conv in conversations]
    lines = lines or list(range(1, len(conversations) + 1))
    hooks = sorted({d.hook for d in directions})
    traces: list[ConversationTrace | None] = [None] * len(toks)
    for i, acts in hook_acts(model, [t.ids for t in toks], hooks, batch_size=batch_size, desc="monitor"):
        proj_TK = torch.stack([acts[d.hook] @ d.unit_D for d in directions], dim=-1)
        proj_TK[0] = math.nan
        traces[i] = ConversationTrace(lines[i], toks[i], proj_TK, _turn_summaries(toks[i], proj_TK, directions))
    return MonitorResult(model.name, model.content_hash, directions, [t for t in traces if t is not None])


def best_threshold(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """The cut (midpoint between neighbouring scores) with the best balanced accuracy, and that accuracy.

    Ties go to the cut closest to the midpoint of the two class means."""
    if not pos or not neg:
        raise ConfigError("calibration needs at least one positive and one negative response")
    values = sorted(set(pos) | set(neg))
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] or [values[0]]
    mid = (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2

    def bal_acc(c: float) -> float:
        return (sum(p >= c for p in pos) / len(pos) + sum(n < c for n in neg) / len(neg)) / 2

    best = max(cuts, key=lambda c: (round(bal_acc(c), 9), -abs(c - mid)))
    return best, bal_acc(best)


def _calibration_responses(model: Any, trait: Any) -> tuple[list[list[Message]], list[list[Message]], str]:
    if trait.examples:
        qs = trait.extract_questions or trait.questions

        def turns(texts: list[str]) -> list[list[Message]]:  # each example answers an extraction question, in turn
            return [[{"role": "user", "content": qs[i % len(qs)]}, {"role": "assistant", "content": t}]
                    for i, t in enumerate(texts)]  # fmt: skip

        return turns(trait.examples["pos"]), turns(trait.examples["neg"]), "examples answering extraction questions"
    from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat

    if getattr(model, "hf", None) is None:
        raise ConfigError(f"calibration: trait {trait.name} has no examples and the model cannot generate")
    gen = GenerationConfig(max_new_tokens=48, greedy=True)
    out: dict[str, list[list[Message]]] = {}
    for side in ("pos", "neg"):
        convs = [chat_messages(q, getattr(p, side)) for q in trait.extract_questions[:5] for p in trait.instruction]
        answers = generate_chat(model.hf, model.tokenizer, convs, gen, desc=f"calibrate:{side}")
        out[side] = [[{"role": "user", "content": c[-1]["content"]}, {"role": "assistant", "content": a or "."}]
                     for c, a in zip(convs, answers, strict=True)]  # fmt: skip
    return out["pos"], out["neg"], "generated under pos/neg system prompts"


def calibrate(model: Any, directions: list[Direction], traits: dict[str, Any]) -> None:
    """Set each direction's threshold from its trait's pos / neg responses (directions without a trait keep none)."""
    for trait_name in sorted({d.trait for d in directions if d.trait in traits}):
        assert trait_name is not None
        trait = traits[trait_name]
        pos, neg, source = _calibration_responses(model, trait)
        group = [d for d in directions if d.trait == trait_name]
        res = project_conversations(model, pos + neg, group, allow_other_model=True)
        for k, d in enumerate(group):
            scores = [_assistant_mean(c.tokens, c.proj_TK[:, k]) for c in res.conversations]
            p, n = scores[: len(pos)], scores[len(pos) :]
            cut, acc = best_threshold(p, n)
            d.calibration = Calibration(sum(p) / len(p), sum(n) / len(n), cut, acc, len(p), len(n), source)
            log.info("%s @ %s: threshold %.3f (pos %.3f, neg %.3f, balanced accuracy %.2f)",
                     d.name, d.hook, cut, d.calibration.pos_mean, d.calibration.neg_mean, acc)  # fmt: skip


def _assistant_mean(tokens: ChatTokens, proj_T: Tensor) -> float:
    mask_T = torch.tensor(tokens.mask(("assistant",)))
    mask_T[0] = False
    return float(proj_T[mask_T].mean())


@dataclass
class SeriesPoint:
    """One checkpoint of a series: mean assistant-token projection per direction and its alerting turns."""

    checkpoint: str
    mean: dict[str, float]
    per_conversation: dict[str, list[float]]
    alerts: int


def monitor_series(
    specs: list[Any], conversations: list[list[Message]], directions: list[Direction], *, batch_size: int = 4,
    allow_other_model: bool = False,
) -> list[SeriesPoint]:  # fmt: skip
    """The same projections for every checkpoint of a series (base -> c1 -> ... -> final, or a training run's saved
    checkpoints), one model at a time; every checkpoint's directions are checked like a single model's."""
    from crosscoder.models import load_model

    points = []
    for spec in specs:
        model = load_model(spec)
        res = project_conversations(
            model, conversations, directions, batch_size=batch_size, allow_other_model=allow_other_model
        )
        per = {d.name: [_assistant_mean(c.tokens, c.proj_TK[:, k]) for c in res.conversations]
               for k, d in enumerate(directions)}  # fmt: skip
        mean = {name: sum(v) / len(v) for name, v in per.items()}
        points.append(SeriesPoint(spec.label, mean, per, len(res.alerts())))
        log.info("series %s: %s", spec.label, ", ".join(f"{k} {v:+.3f}" for k, v in mean.items()))
        del model
    return points


if __name__ == "__main__":
    from crosscoder.errors import run_cli
    from crosscoder.personas.monitor_cli import main

    run_cli(main)
