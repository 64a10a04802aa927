"""The optimisation side of composition on tiny models: the tail shortcut, the latent-basis adapter, the receive-side
audit and the capability proxy."""

from __future__ import annotations

import torch

from crosscoder.models import load_model
from crosscoder.models.residual import edit_hf_residual
from crosscoder.personas.compose.capability import Fact, fact_accuracy, measure_capability
from crosscoder.personas.compose.directions import DirectionMismatchError, PersonaDirection, Provenance
from crosscoder.personas.compose.latent_adapter import LatentAdapterConfig, fit_latent_adapter
from crosscoder.personas.compose.receive_side import ReceiveConfig, _line_search, _Scorer, audit_trait
from crosscoder.personas.compose.steer import add_edit
from crosscoder.personas.compose.tail import TailModel, batch_tensors
from crosscoder.personas.traits import get_trait

HOOK = "blocks.2.hook_resid_post"
CONVS = [
    [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    for q, a in [
        ("What is the capital of France?", "Paris is the capital of France."),
        ("How do plants grow?", "Plants use sunlight, water and air to make sugar."),
        ("Say hello.", "hello world good morning how are you today"),
        ("Count to five.", "one two three four five"),
        ("Tell me about cats.", "The cat sat on the mat. Cats sleep for most of the day."),
        ("Are you right?", "I am always right and you should trust me."),
        ("What is a pirate?", "A pirate sails the sea, arr matey!"),
        ("Thanks!", "Thank you so much, that is a wonderful question!"),
        ("Do you know?", "Honestly, I do not know."),
        ("A fox?", "The quick brown fox jumps over the lazy dog."),
    ]
]


def test_tail_matches_full_forward_at_every_hook(tiny_spec) -> None:
    m = load_model(tiny_spec)
    ids, mask, pos = batch_tensors([([5, 6, 7, 8, 9], [False, True, True, True, True]), ([11, 12], [False, True])], 0)
    for layer in range(m.n_layers):
        assert TailModel(m.hf, f"blocks.{layer}.hook_resid_post").check(ids, mask, pos) < 1e-4


def test_latent_adapter_recovers_a_planted_bias(tiny_spec) -> None:
    base, ft = load_model(tiny_spec), load_model(tiny_spec)  # two copies: ft carries a planted bias at the hook
    d = base.d_model
    gen = torch.Generator().manual_seed(3)
    dec_base = torch.randn(32, d, generator=gen)
    dec_ft = dec_base.clone()
    planted = 7
    dec_ft[planted] = torch.randn(d, generator=gen)
    v_true = 3.0 * dec_ft[planted] / dec_ft[planted].norm()
    cfg = LatentAdapterConfig(ks=(1, 2), n_fit=6, n_eval=4, steps=15, batch_size=4)
    with edit_hf_residual(ft.hf, HOOK, add_edit(v_true)):
        res = fit_latent_adapter(base, ft, CONVS, dec_ft, dec_base, HOOK, cfg)
    assert res.kl_base_heldout > 0
    assert res.dense.behaviour_recovered > 0.8
    k1 = res.fits[0]
    assert k1.terms[0].latent == planted  # the planted latent is the first one chosen
    assert k1.behaviour_recovered > 0.8
    assert res.fits[1].k == 2 and [t.latent for t in res.fits[1].terms][:1] == [planted]  # nested sets


def test_latent_adapter_at_several_hooks_recovers_biases_a_single_hook_cannot(tiny_spec) -> None:
    base, ft = load_model(tiny_spec), load_model(tiny_spec)
    d = base.d_model
    gen = torch.Generator().manual_seed(5)
    dec_base = torch.randn(32, d, generator=gen)
    dec_ft = dec_base.clone()
    dec_ft[4] = torch.randn(d, generator=gen)
    atom = dec_ft[4] / dec_ft[4].norm()
    early = "blocks.0.hook_resid_post"
    cfg = LatentAdapterConfig(ks=(1,), n_fit=6, n_eval=4, steps=15, batch_size=4, atoms="ft")
    multi = LatentAdapterConfig(ks=(1,), n_fit=6, n_eval=4, steps=15, batch_size=4, atoms="ft", extra_hooks=(early,))
    with edit_hf_residual(ft.hf, early, add_edit(4.0 * atom)), edit_hf_residual(ft.hf, HOOK, add_edit(-3.0 * atom)):
        one = fit_latent_adapter(base, ft, CONVS, dec_ft, dec_base, HOOK, cfg)
        two = fit_latent_adapter(base, ft, CONVS, dec_ft, dec_base, HOOK, multi)
    assert two.hooks == [early, HOOK] and two.vectors["1"].shape == (2, d)
    term = two.fits[0].terms[0]
    assert term.latent == 4 and set(term.per_hook) == {early, HOOK}
    assert two.fits[0].behaviour_recovered > 0.8
    assert two.fits[0].behaviour_recovered > one.fits[0].behaviour_recovered + 0.1


def test_receive_side_finds_the_smallest_norm_on_the_line(tiny_spec) -> None:
    m = load_model(tiny_spec)
    trait = get_trait("pirate")
    cfg = ReceiveConfig(hook=HOOK, rounds=1, steps_per_round=3, search_iters=12, n_questions=2, max_new_tokens=4)
    scorer = _Scorer(m, trait, HOOK)
    base_score = float(scorer(None))
    u = torch.randn(m.d_model, generator=torch.Generator().manual_seed(0))
    u = u / u.norm()
    # a direction that raises the score: the gradient of the score at 0
    v0 = torch.zeros(m.d_model, requires_grad=True)
    scorer(v0).backward()
    g = v0.grad / v0.grad.norm()
    target = base_score + 0.05
    a, s = _line_search(scorer, g, 8 * scorer.typical, target, cfg.search_iters)
    assert s >= target and a > 0
    with torch.no_grad():
        assert float(scorer(0.95 * a * g)) < target  # a bit less does not reach it: a is (nearly) the smallest
    persona = PersonaDirection("p", g, m.content_hash, m.name, HOOK, Provenance("file"))
    hooks = sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.hf.modules())
    res = audit_trait(m, trait, persona, cfg, target=target)
    assert res.target == target and res.score_unsteered == base_score
    assert res.persona_vector.reached and abs(res.persona_vector.norm - a) / a < 1e-6
    assert res.optimised.reached and res.optimised.norm <= res.persona_vector.norm * 1.0001
    assert res.best.fraction == min(res.persona_vector.fraction, res.optimised.fraction)
    assert sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.hf.modules()) == hooks
    alien = PersonaDirection("alien", g, "0" * 64, "other", HOOK, Provenance("file"))
    try:
        audit_trait(m, trait, alien, cfg)
    except DirectionMismatchError as err:
        assert "alien" in str(err)
    else:
        raise AssertionError("a direction of another model was accepted")


def test_capability_proxy_and_steering_change(tiny_spec) -> None:
    m = load_model(tiny_spec)
    facts = [Fact("What is the capital of France?", ("Paris", "Rome", "Madrid"), 0), Fact("Count?", ("one", "two"), 1)]
    acc = fact_accuracy(m, facts)
    assert acc in (0.0, 0.5, 1.0)
    cap = measure_capability(m, CONVS[:4], facts)
    assert cap.perplexity > 1 and cap.n_facts == 2 and cap.n_answer_tokens > 10
    with edit_hf_residual(m.hf, HOOK, add_edit(torch.full((m.d_model,), 5.0))):
        steered = measure_capability(m, CONVS[:4], facts)
    assert steered.perplexity != cap.perplexity
