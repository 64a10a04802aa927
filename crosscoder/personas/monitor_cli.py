"""Command line of the persona monitor (``python -m crosscoder.personas.monitor``) and the shared direction options.

    python -m crosscoder.personas.monitor --model organism:demo --chat chat.jsonl --trait cat_obsession \\
        [--trait pirate] [--vectors FILE] [--directions FILE] [--run RUN_DIR [--latents 12,40]] [--hook HOOK] \\
        [--series | --checkpoints CKPT1,CKPT2,...] [--out DIR] [--allow-other-model]

Directions: ``--trait`` computes the trait's persona vector on the base model (the series' first model for an
``organism:`` spec, the spec without its adapter for a LoRA spec, else the model itself) and calibrates its alert
threshold there; ``--vectors`` reads a persona-vector file; ``--directions`` a calibrated set written by an earlier
run (``directions.safetensors``); ``--run`` the labelled persona latents of a crosscoder run. ``--series`` monitors
every checkpoint of an organism (base -> c1 -> ... -> final) as well; ``--checkpoints`` does the same for a training
run's own saved checkpoints (adapter folders over ``--model``, or model folders), after ``--model``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from crosscoder.errors import ConfigError
from crosscoder.models.spec import ModelSpec
from crosscoder.personas.directions import Direction, load_directions, load_vector_file, vector_direction

log = logging.getLogger(__name__)


def add_direction_args(p: argparse.ArgumentParser) -> None:
    """The options that choose persona directions (shared by monitor and screening)."""
    p.add_argument("--trait", action="append", default=[], help="trait name or .json (repeatable)")
    p.add_argument("--trait-dir", action="append", default=[], help="extra trait folder")
    p.add_argument("--vectors", action="append", default=[], help="persona-vector file (repeatable)")
    p.add_argument("--directions", action="append", default=[], help="direction file from an earlier run")
    p.add_argument("--run", help="crosscoder run folder: use its labelled persona latents")
    p.add_argument("--analysis-dir", help="analysis output of --run (default RUN/analysis)")
    p.add_argument("--latents", help="comma-separated latent ids of --run (default: every labelled candidate)")
    p.add_argument("--hook", help="residual hook of the persona vectors (default: each vector's best layer)")
    p.add_argument("--allow-other-model", action="store_true", help="accept directions computed on another model")


def parse_spec(source: str, adapter: str | None = None, backend: str = "bridge") -> ModelSpec:
    """The model spec of the command line (an ``organism:<name>[@ckpt]`` reference stays one; see `concrete`)."""
    return ModelSpec(source=source, adapter=adapter, backend=backend)


def concrete(spec: ModelSpec) -> ModelSpec:
    """The loadable spec behind an ``organism:<name>[@ckpt]`` reference (built on first use, cached); others as is."""
    if spec.resolved_kind() != "organism":
        return spec
    from crosscoder.personas.organisms import resolve_organism

    return replace(resolve_organism(spec.source.removeprefix("organism:")), backend=spec.backend)


def checkpoint_specs(items: str, model: ModelSpec) -> list[ModelSpec]:
    """A training run's checkpoints (comma list, in order): PEFT adapter folders go on top of `model`, other
    folders are full models. A missing folder is refused before any model loads."""
    specs = []
    for item in [x for x in items.split(",") if x]:
        path = Path(item).expanduser()
        if not path.is_dir():
            raise ConfigError(f"--checkpoints: {item} is not a folder; give adapter or model folders in training order")
        if (path / "adapter_config.json").is_file():
            specs.append(replace(model, adapter=str(path), name=path.name))
        else:
            specs.append(ModelSpec(source=str(path), backend=model.backend, name=path.name))
    if not specs:
        raise ConfigError("--checkpoints: empty; give a comma list of checkpoint folders")
    return specs


def base_of(spec: ModelSpec) -> ModelSpec:
    """The model persona vectors are computed on: an organism's base, a LoRA spec without its adapter."""
    if spec.resolved_kind() == "organism":
        from crosscoder.personas.organisms.registry import organism_series

        return organism_series(spec.source.removeprefix("organism:").partition("@")[0])[0]
    return replace(spec, adapter=None, name="base") if spec.adapter else spec


def build_directions(args: argparse.Namespace, base_model: Any) -> tuple[list[Direction], dict[str, Any]]:
    """Directions from the CLI options (traits computed on `base_model`), and the traits they stand for."""
    from crosscoder.personas.traits import get_trait, load_traits
    from crosscoder.personas.vectors import compute_persona_vectors

    directions: list[Direction] = []
    traits: dict[str, Any] = {}
    for name in args.trait:
        trait = get_trait(name, args.trait_dir)
        traits[trait.name] = trait
        pv = compute_persona_vectors(base_model, trait)
        directions.append(vector_direction(pv, args.hook, source=f"persona vectors of {trait.name}"))
    directions += [load_vector_file(path, args.hook) for path in args.vectors]
    for path in args.directions:
        directions += load_directions(path)
    if args.run:
        from crosscoder.personas.xc_latents import latent_directions, load_run, persona_latents

        run = load_run(args.run)
        ids = [int(x) for x in args.latents.split(",")] if args.latents else None
        directions += latent_directions(run, persona_latents(run, args.analysis_dir, ids))
    if not directions:
        raise ConfigError("no persona directions: pass --trait, --vectors, --directions or --run")
    library = load_traits(args.trait_dir)
    for d in directions:
        if d.trait and d.trait not in traits and d.trait in library:
            traits[d.trait] = library[d.trait]
    return directions, traits


def main(argv: list[str] | None = None) -> None:
    from crosscoder.models import load_model
    from crosscoder.personas.monitor import calibrate, monitor_series, project_conversations
    from crosscoder.personas.monitor_report import write_monitor
    from crosscoder.personas.sft_data import read_sft_jsonl

    p = argparse.ArgumentParser(prog="python -m crosscoder.personas.monitor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model spec: name, folder, .gguf or organism:<name>[@ckpt]")
    p.add_argument("--adapter", help="PEFT adapter folder on top of --model")
    p.add_argument("--backend", default="bridge", choices=["bridge", "hooked"])
    p.add_argument("--chat", required=True, help='chat JSONL: one {"messages": [{role, content}, ...]} per line')
    p.add_argument("--series", action="store_true", help="also monitor every checkpoint of the organism's series")
    p.add_argument("--checkpoints", help="comma list of a training run's checkpoints (adapter folders over --model, "
                   "or model folders), monitored in order after --model as a series")  # fmt: skip
    p.add_argument("--out", default="results/monitor", help="output folder")
    add_direction_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convs = read_sft_jsonl(args.chat)  # bad lines fail here, before any model loads
    spec = parse_spec(args.model, args.adapter, args.backend)
    if args.series and spec.resolved_kind() != "organism":
        raise ConfigError("--series: needs an organism:<name> model (its checkpoints form the series)")
    if args.series and args.checkpoints:
        raise ConfigError("--series and --checkpoints: pick one (an organism's checkpoints or your own)")
    series_specs = [spec, *checkpoint_specs(args.checkpoints, spec)] if args.checkpoints else None
    base_spec = base_of(spec)
    base_model = load_model(base_spec)
    directions, traits = build_directions(args, base_model)
    from crosscoder.personas.directions import check_directions

    check_directions(base_model, directions, allow_other_model=args.allow_other_model)
    calibrate(base_model, [d for d in directions if d.calibration is None], traits)
    model = base_model if spec == base_spec else load_model(concrete(spec))
    del base_model
    result = project_conversations(model, convs, directions, allow_other_model=args.allow_other_model)
    if args.series:
        from crosscoder.personas.organisms.registry import organism_series

        series_specs = organism_series(spec.source.removeprefix("organism:").partition("@")[0])
    series = None
    if series_specs:
        series = monitor_series(series_specs, convs, directions, allow_other_model=args.allow_other_model)
    page = write_monitor(Path(args.out), result, series)
    for line, turn, name in result.alerts():
        print(f"ALERT line {line} turn {turn}: {name}")
    print(f"{len(result.alerts())} alerting turn(s); wrote {page}")
