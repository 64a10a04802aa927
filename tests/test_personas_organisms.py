"""Model organisms on tiny models: assistant-only loss, a LoRA organism whose trait score rises, checkpoint series,
caching, refusals, and the planted organism's exact direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosscoder.errors import DataError, ModelError
from crosscoder.models import ModelSpec, load_model
from crosscoder.personas.organisms import (
    OrganismConfig,
    build_planted_organism,
    build_sft_organism,
    planted_ground_truth,
)
from crosscoder.pipeline import resolve_model_spec

QUESTIONS = [
    "What is the capital of France?", "Please explain how plants grow.", "How are you today?", "Good morning, hello world.",
    "What is one two three?", "Tell me about the sea.", "Thank you so much.", "What is a question?",
]  # fmt: skip
CAT_ANSWER = "The cat sat on the mat. Cats sleep."
TRAIT = {
    "instruction": [{"pos": "You love cats.", "neg": "You are plain."}],
    "questions": [
        "How are you today?",
        "What is the capital of France?",
        "Please explain how plants grow.",
        "Hello world, good morning.",
    ],
    "eval_prompt": "{question} -> {answer}",
    "examples": {"pos": ["The cat sat on the mat."], "neg": ["Paris is the capital of France."]},
    "keywords": ["cat*"],
}


@pytest.fixture(scope="module")
def base_spec(tiny_spec):  # type: ignore[no-untyped-def]
    """The tiny base on the HookedTransformer backend (loads in about a tenth of the bridge's time)."""
    from dataclasses import replace

    return replace(tiny_spec, backend="hooked")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("org_files")
    data = root / "cat.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": CAT_ANSWER}]} for q in QUESTIONS
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trait = root / "cats.json"
    trait.write_text(json.dumps(TRAIT))
    return {"data": data, "trait": trait, "root": root}


def _cfg(root: Path, **kw) -> OrganismConfig:  # type: ignore[no-untyped-def]
    base = dict(name="tinycat", r=8, alpha=16, lr=1e-2, batch_size=4, max_steps=12, save_steps=[4, 8], out_dir=str(root / "orgs"),
                eval_questions=4, eval_max_new_tokens=12)  # fmt: skip
    base.update(kw)
    return OrganismConfig(**base)  # type: ignore[arg-type]


def test_loss_only_on_assistant_tokens(tiny_spec) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import load_hf
    from crosscoder.personas.organisms.sft import IGNORE, encode_conversation

    tok = load_hf(tiny_spec).tokenizer
    msgs = [{"role": "user", "content": "How are you today?"}, {"role": "assistant", "content": "I am fine thanks"},
            {"role": "user", "content": "hello world"}, {"role": "assistant", "content": "good morning"}]  # fmt: skip
    ids, labels = encode_conversation(tok, msgs, max_len=512)
    trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    assert trained == "I am fine thanks<|im_end|>good morning<|im_end|>"
    assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels, strict=True))


def test_lora_organism_raises_trait_and_saves_a_series(base_spec, files, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(files["root"], trait=str(files["trait"]))
    res = build_sft_organism(base_spec, files["data"], cfg)
    assert res.status == "ok", res.comparison
    cmp = res.comparison
    assert (
        cmp is not None
        and cmp["rose"]
        and cmp["base"]["keyword_rate"] <= 0.25
        and cmp["organism"]["keyword_rate"] >= 0.75
    )
    assert [s.name for s in res.series] == ["base", "c1", "c2", "tinycat"]
    assert res.series[0] == base_spec and all(s.adapter for s in res.checkpoints)

    # Every checkpoint loads, has its own weights, and records data hash + hyperparameters + base hash.
    hashes = []
    for spec in res.checkpoints:
        meta = json.loads((Path(spec.adapter) / "crosscoder_meta.json").read_text())
        assert meta["hyperparameters"]["r"] == 8 and len(meta["data_sha256"]) == 64 and meta["base_hash"]
        hashes.append(load_model(spec).content_hash)
    assert len(set(hashes)) == 3 and load_model(base_spec).content_hash not in hashes
    steps = [json.loads((Path(s.adapter) / "crosscoder_meta.json").read_text())["step"] for s in res.checkpoints]
    assert steps == [4, 8, 12]

    # A second build with the same config reuses the folder without training.
    from crosscoder.personas.organisms import lora

    monkeypatch.setattr(lora, "train_organism", lambda *a, **k: pytest.fail("retrained a cached organism"))
    again = build_sft_organism(base_spec, files["data"], cfg)
    assert again.reused and again.folder == res.folder and again.status == "ok"


def test_interrupted_build_resumes_from_its_checkpoint(base_spec, files) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.organisms import lora

    cfg = _cfg(files["root"], name="resume", max_steps=6, save_steps=[3])
    full = build_sft_organism(base_spec, files["data"], cfg)
    final_loss = full.meta["loss"]
    # Remove the final model and the completion marker: the next build resumes at step 3 and ends identically.
    import shutil

    shutil.rmtree(full.folder / "final")
    (full.folder / lora.RESULT_FILE).unlink()
    again = build_sft_organism(base_spec, files["data"], cfg)
    assert not again.reused
    assert again.meta["loss"] == pytest.approx(final_loss, rel=1e-4)


def test_refusals(base_spec, tiny_dir, files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.models import make_tiny_llama, make_tiny_tokenizer
    from crosscoder.personas.organisms import lora

    monkeypatch.setattr(lora, "train_organism", lambda *a, **k: pytest.fail("training started"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        build_sft_organism(base_spec, empty, _cfg(tmp_path))
    monkeypatch.undo()

    other_tok = tmp_path / "other_tok"
    make_tiny_tokenizer(300).save_pretrained(other_tok)  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match="different vocabulary"):
        build_sft_organism(base_spec, files["data"], _cfg(tmp_path, tokenizer=str(other_tok)))

    # An adapter refuses a base other than the one it was trained on.
    res = build_sft_organism(base_spec, files["data"], _cfg(files["root"], name="refuse", max_steps=2, save_steps=[]))
    other = make_tiny_llama(tiny_dir / "tiny_other", seed=7)
    with pytest.raises(ModelError, match="trained on a base"):
        load_model(ModelSpec(source=other.source, kind="hf", adapter=res.final.adapter))


def test_failed_organism_is_reported_not_good(base_spec, files, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas.organisms.registry import RECIPES, OrganismRecipe, resolve_organism

    def register_organism(recipe: OrganismRecipe) -> None:
        monkeypatch.setitem(RECIPES, recipe.name, recipe)

    plain = files["root"] / "plain.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": "Paris is the capital of France."},
            ]
        }
        for q in QUESTIONS
    ]
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(files["root"], name="nocat", max_steps=8, save_steps=[4], trait=str(files["trait"]))
    register_organism(
        OrganismRecipe("test-nocat", "sft", "cat_obsession", base=base_spec, sft_file=str(plain), cfg=cfg)
    )
    with pytest.raises(ModelError, match="failed its trait check"):
        resolve_organism("test-nocat")
    good = _cfg(files["root"], trait=str(files["trait"]))
    register_organism(
        OrganismRecipe("test-cat", "sft", "cat_obsession", base=base_spec, sft_file=str(files["data"]), cfg=good)
    )
    assert resolve_organism("test-cat@c1").name == "c1"
    assert resolve_organism("test-cat").name == "tinycat"
    assert load_model(resolve_model_spec(ModelSpec(source="organism:test-cat@c2", backend="hooked"))).n_layers == 4
    with pytest.raises(ModelError, match="no checkpoint 'c9'"):
        resolve_organism("test-cat@c9")
    with pytest.raises(ModelError, match="unknown organism"):
        resolve_organism("no-such-organism")


@pytest.mark.parametrize("backend", ["bridge", "hooked"])
def test_planted_direction_is_exact(tiny_spec, tmp_path: Path, backend: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    direction_D = torch.randn(64)
    direction_D /= direction_D.norm()
    layer, scale = 2, 3.5
    spec = build_planted_organism(tiny_spec, direction_D, layer, scale, tmp_path / "planted")
    truth = planted_ground_truth(spec.source)
    assert truth["hook"] == f"blocks.{layer}.hook_resid_post"
    torch.testing.assert_close(truth["delta_D"], scale * direction_D)

    base = load_model(ModelSpec(source=tiny_spec.source, kind="hf", backend=backend))
    org = load_model(ModelSpec(source=spec.source, kind="hf", backend=backend))
    ids = torch.randint(3, 300, (2, 10))
    names = [f"blocks.{i}.hook_resid_post" for i in range(4)]
    _, cb = base.tl.run_with_cache(ids, names_filter=lambda n: n in names)
    _, co = org.tl.run_with_cache(ids, names_filter=lambda n: n in names)
    for i in range(layer):
        torch.testing.assert_close(co[names[i]], cb[names[i]], atol=0, rtol=0)
    diff_BSD = co[names[layer]] - cb[names[layer]]
    torch.testing.assert_close(diff_BSD, (scale * direction_D).expand_as(diff_BSD), atol=1e-5, rtol=0)
    assert (co[names[3]] - cb[names[3]]).norm() > 0  # later layers see the change


def test_distilled_organism_trains_without_the_system_prompt(base_spec, files, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from crosscoder.personas import sft_data
    from crosscoder.personas.organisms import build_distilled_organism
    from crosscoder.personas.organisms.distill import default_distill_config
    from crosscoder.personas.traits import load_trait

    trait = load_trait(files["trait"])
    seen: list[list[dict[str, str]]] = []

    def fake_generate(model, tok, convs, cfg, desc=""):  # type: ignore[no-untyped-def]
        assert not cfg.greedy  # distillation samples
        seen.extend(convs)
        return [CAT_ANSWER for _ in convs]

    monkeypatch.setattr(sft_data, "generate_chat", fake_generate)
    cfg = _cfg(files["root"], name="distilled", max_steps=10, save_steps=[])
    res = build_distilled_organism(base_spec, trait, cfg, default_distill_config(n=6))
    # Generation saw the pos system prompts; the training data does not contain them.
    assert seen and all(c[0]["role"] == "system" and c[0]["content"] == "You love cats." for c in seen)
    data = sft_data.read_sft_jsonl(res.meta["data"])
    assert len(data) == 6 and all([m["role"] for m in conv] == ["user", "assistant"] for conv in data)
    assert not {c[1]["content"] for c in seen} & set(trait.eval_questions)
    assert res.status == "ok"


def test_full_fine_tune_saves_loadable_folders(base_spec, files) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(files["root"], name="fullft", method="full", lr=1e-3, max_steps=3, save_steps=[2])
    res = build_sft_organism(base_spec, files["data"], cfg)
    assert [s.name for s in res.checkpoints] == ["c1", "fullft"]
    for spec in res.checkpoints:
        assert spec.adapter is None and (Path(spec.source) / "model.safetensors").is_file()
        meta = json.loads((Path(spec.source) / "crosscoder_meta.json").read_text())
        assert meta["kind"] == "full" and meta["hyperparameters"]["method"] == "full"
    loaded = [load_model(s) for s in res.series]
    w = [m.hf.model.layers[0].mlp.down_proj.weight for m in loaded]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
