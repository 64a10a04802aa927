"""Command line of the composition tools: ``python -m crosscoder.personas.compose <command> ...``.

Make directions (``persona``, ``latent``, ``file``), inspect them (``show``, ``cosine``), combine them (``scale``,
``add``, ``subtract``, ``orthogonalise``, ``project-out``), steer with them (``steer``: answers with and without),
write a LoRA with them removed (``surgery``: the only command that puts a direction into saved weights, as a new
adapter) or without the LoRA components that carry one trait (``components``, a new adapter too), and audit how cheaply a trait switches on (``receive-side``). Errors a user can fix are one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.compose import ops
from crosscoder.personas.compose.directions import PersonaDirection

log = logging.getLogger(__name__)


def _spec(text: str, adapter: str | None = None) -> ModelSpec:
    return ModelSpec(source=text, adapter=adapter)


def _load(paths: list[str]) -> list[PersonaDirection]:
    return [PersonaDirection.load(p) for p in paths]


def _save(d: PersonaDirection, out: str) -> None:
    path = d.save(out)
    print(f"{d.name}: norm {d.norm:.4g}, {d.hook}, model {d.model_name} {d.model_hash[:12]} -> {path}")


def cmd_persona(a: argparse.Namespace) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.compose.sources import from_persona_vectors
    from crosscoder.personas.traits import get_trait
    from crosscoder.personas.vectors import compute_persona_vectors

    model = load_model(_spec(a.model, a.adapter))
    pv = compute_persona_vectors(model, get_trait(a.trait, a.trait_dir), source=a.source)
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)] if a.all_hooks else a.hook or [pv.best_hook]
    for hook in hooks:
        _save(from_persona_vectors(pv, hook, model.name), str(Path(a.out_dir) / f"{pv.trait}@{hook}"))


def cmd_latent(a: argparse.Namespace) -> None:
    from crosscoder.personas.compose.sources import decoder_directions

    for d in decoder_directions(a.crosscoder, a.latent, a.model, minus=a.minus, hook=a.hook):
        _save(d, str(Path(a.out_dir) / d.name))


def cmd_file(a: argparse.Namespace) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.compose.sources import from_vector_file

    model = load_model(_spec(a.model, a.adapter))
    d = from_vector_file(a.vector, model_hash=model.content_hash, model_name=model.name, hook=a.hook, key=a.key)
    model.check_hooks([d.hook])
    if d.d_model != model.d_model:
        raise ConfigError(
            f"vector {a.vector} has width {d.d_model}, model {model.name} has {model.d_model}; use its vector"
        )
    _save(d, a.out)


def cmd_show(a: argparse.Namespace) -> None:
    for d in _load(a.directions):
        print(json.dumps(d.manifest(), indent=2))


def cmd_algebra(a: argparse.Namespace) -> None:
    ds = _load(a.directions)
    if a.cmd == "scale":
        _save(ops.scale(ds[0], a.by, a.name), a.out)
    elif a.cmd in ("add", "subtract"):
        if len(ds) != 2:
            raise ConfigError(f"{a.cmd}: give exactly two directions")
        _save((ops.add if a.cmd == "add" else ops.subtract)(ds[0], ds[1], a.name), a.out)
    elif a.cmd == "project-out":
        _save(ops.project_out(ds[0], _load(a.against), a.name), a.out)
    elif a.cmd == "orthogonalise":
        for d in ops.orthogonalise(ds, unit=a.unit):
            _save(d, str(Path(a.out_dir) / d.name.replace("⊥", "_orth")))


def cmd_cosine(a: argparse.Namespace) -> None:
    ds = _load(a.directions)
    cos = ops.cosine_matrix(ds)
    names = [d.name for d in ds]
    if a.json:
        print(json.dumps({"names": names, "cosine": [[round(float(x), 6) for x in row] for row in cos]}))
        return
    width = max(len(n) for n in names)
    print(" " * width + "  " + "  ".join(f"{i:>6d}" for i in range(len(names))))
    for i, n in enumerate(names):
        print(f"{n:<{width}}  " + "  ".join(f"{float(x):+.3f}" for x in cos[i]))


def _terms(items: list[str]) -> list[tuple[PersonaDirection, float]]:
    out = []
    for item in items:
        path, sep, coef = item.rpartition(":")
        if not sep:
            path, coef = item, "1"
        try:
            out.append((PersonaDirection.load(path), float(coef)))
        except ValueError as err:
            raise ConfigError(f"--direction {item!r}: use FILE:COEFFICIENT, e.g. pirate.json:4") from err
    return out


def cmd_steer(a: argparse.Namespace) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.compose.steer import steer
    from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat

    model = load_model(_spec(a.model, a.adapter))
    if model.hf is None:
        raise ConfigError(f"steer: model {model.name} has no HF module to generate with; load a Hugging Face model")
    terms = _terms(a.direction)
    gen = GenerationConfig(max_new_tokens=a.max_new_tokens, greedy=True)
    convs = [chat_messages(q) for q in a.question]
    plain = generate_chat(model.hf, model.tokenizer, convs, gen)
    allow = tuple(a.allow_model or ())
    with steer(model, terms, allow_models=allow):
        steered = generate_chat(model.hf, model.tokenizer, convs, gen)
    for q, p, s in zip(a.question, plain, steered, strict=True):
        print(json.dumps({"question": q, "unsteered": p, "steered": s}, indent=2, ensure_ascii=False))


def cmd_surgery(a: argparse.Namespace) -> None:
    from crosscoder.io import read_json
    from crosscoder.models.hf import resolve_folder
    from crosscoder.personas.compose.surgery import SurgeryConfig, base_weight_loader, lora_surgery
    from crosscoder.personas.organisms.lora import base_content_hash

    base = _spec(a.base)
    folder, _ = resolve_folder(base)
    model_type = str(read_json(Path(folder) / "config.json").get("model_type", ""))
    cfg = SurgeryConfig(mode=a.mode, factor=a.factor, layers=a.layers, scope=a.scope)
    res = lora_surgery(a.adapter, _load(a.direction), a.out, base_hash=base_content_hash(base), model_type=model_type,
                       config=cfg, base_weights=base_weight_loader(folder))  # fmt: skip
    print(f"new adapter {res.out}: {len(res.edited)} lora_B tensors edited ({a.mode}"
          f"{'' if a.mode == 'remove' else f' x{a.factor:g}'}), {res.removed_fraction:.1%} of their squared norm "
          f"was in the directions' span; source {res.source} unchanged")  # fmt: skip
    if res.unedited_modules and a.scope == "adapter":
        print(f"not edited ({len(res.unedited_modules)} modules that do not write into the residual stream, e.g. "
              f"{res.unedited_modules[0]}): their effect reaches the residual only through the base model's writers")  # fmt: skip


def cmd_components(a: argparse.Namespace) -> None:
    from crosscoder.models import load_model
    from crosscoder.models.hf import load_hf
    from crosscoder.personas.compose.component_surgery import ComponentTexts, component_surgery
    from crosscoder.personas.compose.components import ComponentConfig
    from crosscoder.personas.sft_data import read_sft_jsonl

    cfg = ComponentConfig(n_components=a.n_components, rounds=a.rounds)
    removed, kept = read_sft_jsonl(Path(a.removed_data))[: a.n_texts], read_sft_jsonl(Path(a.kept_data))[: a.n_texts]
    if a.plain_data:
        plain = read_sft_jsonl(Path(a.plain_data))[: a.n_texts]
    else:
        from crosscoder.personas.compose.component_surgery import plain_answers

        plain = plain_answers(load_model(_spec(a.base)), a.n_texts)
    labels = {"removed": a.removed_data, "kept": a.kept_data, "plain": a.plain_data or "base answers to SFT questions"}
    res = component_surgery(a.adapter, a.out, load_hf(_spec(a.base)), ComponentTexts(removed, kept, plain, labels=labels),
                            cfg)  # fmt: skip
    print(f"new adapter {res.out}: {len(res.removed)} of {res.n_components} singular components removed "
          f"({res.summary['by_module']}); source {res.source} unchanged")  # fmt: skip


def cmd_receive_side(a: argparse.Namespace) -> None:
    from dataclasses import asdict

    from crosscoder.models import load_model
    from crosscoder.personas.compose.receive_side import ReceiveConfig, audit_trait
    from crosscoder.personas.compose.sources import from_persona_vectors
    from crosscoder.personas.traits import get_trait
    from crosscoder.personas.vectors import compute_persona_vectors

    cfg = ReceiveConfig(hook=a.hook, margin=a.margin)
    trait = get_trait(a.trait, a.trait_dir)
    base = load_model(_spec(a.base))
    persona = from_persona_vectors(compute_persona_vectors(base, trait), cfg.hook, base.name)
    model = base if a.model is None else load_model(_spec(a.model, a.adapter))
    on_base = audit_trait(base, trait, persona, cfg)
    res = on_base if a.model is None else audit_trait(model, trait, persona, cfg, target=on_base.target,
                                                      related=(base.content_hash,))  # fmt: skip
    print(
        json.dumps({"base": asdict(on_base), "model": asdict(res)} if a.model else asdict(res), indent=2, default=str)
    )


def _add_components_parser(sub: Any) -> None:
    p = sub.add_parser("components", help="a NEW adapter without the LoRA components that carry one trait")
    p.add_argument("--adapter", required=True)
    p.add_argument("--removed-data", required=True, help="SFT .jsonl of the trait to remove")
    p.add_argument("--kept-data", required=True, help="SFT .jsonl of the trait to keep")
    p.add_argument("--plain-data", default=None, help="SFT .jsonl of plain answers (default: the base's own answers)")
    p.add_argument("--n-texts", type=int, default=16, help="conversations per set")
    p.add_argument("--n-components", type=int, default=192)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", required=True)
    p.add_argument("--base", default="smollm2-135m-instruct", help="the adapter's base model")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("persona", help="a trait's persona vector(s) as directions")
    p.add_argument("--trait", required=True)
    p.add_argument("--trait-dir", action="append", default=None)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--adapter", default=None)
    p.add_argument("--hook", action="append", help="residual hook (repeatable); default: the best-separating one")
    p.add_argument("--all-hooks", action="store_true", help="every block's resid_post")
    p.add_argument("--source", default="auto", help="persona-vector source: auto, both, prompts, examples")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("latent", help="crosscoder latent decoders (or decoder changes) as directions")
    p.add_argument("--crosscoder", required=True, help="a train.py run folder")
    p.add_argument("--latent", type=int, nargs="+", required=True)
    p.add_argument("--model", default="ft", help="the decoder's model (name or index in the run)")
    p.add_argument("--minus", default=None, help="subtract this model's decoder (decoder change), e.g. base")
    p.add_argument("--hook", default=None)
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("file", help="a vector file (.safetensors or .npy) for a stated model and hook")
    p.add_argument("--vector", required=True)
    p.add_argument("--key", default=None)
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--hook", required=True)
    p.add_argument("--out", required=True)
    sub.add_parser("show", help="print manifests").add_argument("directions", nargs="+")
    p = sub.add_parser("cosine", help="cosine matrix of directions")
    p.add_argument("directions", nargs="+")
    p.add_argument("--json", action="store_true")
    for name, hlp in (
        ("scale", "FACTOR * A"),
        ("add", "A + B"),
        ("subtract", "A - B"),
        ("project-out", "A without B, C..."),
    ):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("directions", nargs="+")
        p.add_argument("--out", required=True)
        p.add_argument("--name", default=None)
        if name == "scale":
            p.add_argument("--by", type=float, required=True)
        if name == "project-out":
            p.add_argument("--against", nargs="+", required=True)
    p = sub.add_parser("orthogonalise", help="Gram-Schmidt in the given order")
    p.add_argument("directions", nargs="+")
    p.add_argument("--unit", action="store_true")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("steer", help="answers with and without steering along directions")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--adapter", default=None)
    p.add_argument("--direction", action="append", required=True, help="FILE:COEFFICIENT (repeatable)")
    p.add_argument("--allow-model", action="append", help="also accept directions of this model hash (its base)")
    p.add_argument("--question", action="append", required=True)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p = sub.add_parser("surgery", help="a NEW adapter with the directions removed from its residual writes")
    p.add_argument("--adapter", required=True)
    p.add_argument("--direction", action="append", required=True, help="direction file (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["remove", "scale"], default="remove")
    p.add_argument("--factor", type=float, default=0.0, help="scale mode: multiply the component by this")
    p.add_argument("--layers", choices=["reach", "own", "all"], default="reach")
    p.add_argument(
        "--scope", choices=["adapter", "model"], default="adapter", help="whole writer output or adapter only"
    )
    p.add_argument("--base", default="smollm2-135m-instruct", help="the adapter's base model")
    _add_components_parser(sub)
    p = sub.add_parser("receive-side", help="smallest steering vector that switches a trait on")
    p.add_argument("--trait", required=True)
    p.add_argument("--trait-dir", action="append", default=None)
    p.add_argument("--base", default="smollm2-135m-instruct")
    p.add_argument("--model", default=None, help="the model to audit (default: the base)")
    p.add_argument("--adapter", default=None)
    p.add_argument("--hook", default="blocks.20.hook_resid_post")
    p.add_argument("--margin", type=float, default=0.5, help="target = the base's unsteered score + this (nats/token)")


COMMANDS = {
    "persona": cmd_persona, "latent": cmd_latent, "file": cmd_file, "show": cmd_show, "cosine": cmd_cosine,
    "scale": cmd_algebra, "add": cmd_algebra, "subtract": cmd_algebra, "project-out": cmd_algebra,
    "orthogonalise": cmd_algebra, "steer": cmd_steer, "surgery": cmd_surgery, "receive-side": cmd_receive_side,
    "components": cmd_components,
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crosscoder.personas.compose", description=__doc__)
    add_parsers(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    COMMANDS[args.cmd](args)
