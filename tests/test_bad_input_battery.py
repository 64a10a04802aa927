"""The bad-input battery (issue 19): every input a hostile user can get wrong, across train.py, analyze.py, the
analysis / data / organism / bench command lines, gives the project's one-line error with exit status 2, names the
problem, and leaves every earlier output byte for byte as it was.

Each case builds its bad input (on copies, in its own folder) and returns the command as a callable; the harness
runs it through `run_cli` (the wrapper every entry point uses) in this process, so the battery stays fast. The few
failures that happen inside Hydra before our code runs (the run folder, train.py's callback) go through a real
`python train.py` subprocess. Before and after each case the harness hashes every file of the shared finished run
(crosscoder, checkpoints, analysis folder), its activation cache, the tiny models and the case's own folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crosscoder.errors import EXIT_USER_ERROR, run_cli

REPO = Path(__file__).resolve().parents[1]
HOOK = "blocks.2.hook_resid_post"
Action = Callable[[], Any]


@dataclass
class Env:
    """The shared inputs: two tiny models, a finished run (checkpoints, final/, analysis/) and its cache."""

    root: Path
    base: Path
    ft: Path
    run: Path
    acts: Path
    models: list[Any]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Processes holding locks for the lock cases (killed at the end)."""

    def train_overrides(self, cache_root: Path | None = None) -> list[str]:
        return [
            f"models.models=[{{source:{self.base},name:base}},{{source:{self.ft},name:ft}}]",
            f"data.hooks=[{HOOK}]", "data.n_tokens=1500", "data.norm_sample_tokens=1000", "data.shard_tokens=512",
            f"data.cache_root={cache_root or self.root / 'acts'}",
            "trainer.steps=20", "trainer.batch_size=128", "trainer.warmup_steps=2", "trainer.l1_warmup_steps=2",
            "trainer.checkpoint_every=10", "trainer.log_every=10", "crosscoder.n_latents=64",
            "logging=disabled", "logging.measure_mfu=false", "logging.progress=false",
        ]  # fmt: skip

    def analyze_overrides(self, run: Path | None = None) -> list[str]:
        return [
            f"run_dir={run or self.run}", "labels.enabled=false", "steering.enabled=false", "splice.enabled=false",
            "evidence.baseline=false", "report.enabled=false", "export.wandb_mode=disabled", "labels.said=false",
        ]  # fmt: skip

    def run_copy(self, tmp: Path) -> Path:
        """A copy of the finished run (its run.json still points at the shared cache)."""
        return Path(shutil.copytree(self.run, tmp / "run"))


def compose_train(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from crosscoder.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=overrides))


def train(env: Env, run_dir: Path, *extra: str, cache_root: Path | None = None) -> Action:
    """train.py as a library call: compose (config checks), the run-folder checks, then run_train."""

    def go() -> Any:
        from crosscoder.launch.outputs import check_run_location
        from crosscoder.pipeline import run_train

        cfg = compose_train([*env.train_overrides(cache_root), *extra])
        trainer = {"trainer": {"resume": cfg.trainer.resume, "overwrite": cfg.trainer.overwrite}}
        from omegaconf import OmegaConf

        check_run_location(OmegaConf.create(trainer), str(run_dir), multirun=False)  # train.py's Hydra callback
        return run_train(cfg, run_dir)

    return go


def analyze(env: Env, *overrides: str, run: Path | None = None, models: bool = False) -> Action:
    def go() -> Any:
        from crosscoder.analysis.run import run_analysis
        from crosscoder.config import compose_analyze

        cfg = compose_analyze(REPO / "configs", [*env.analyze_overrides(run), *overrides])
        return run_analysis(cfg, models=env.models if models else None)

    return go


def command(main: Callable[[list[str] | None], Any], *argv: str) -> Action:
    return lambda: main(list(argv))


def snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def flip_byte(path: Path, offset: int = -16) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def model_copy(src: Path, tmp: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(src, tmp / name))


def a_file(tmp: Path, name: str = "a_file") -> Path:
    path = tmp / name
    path.write_text("not a folder\n")
    return path


def live_lock(folder: Path, tmp: Path) -> subprocess.Popen[bytes]:
    """A lock in `folder` held by a live process (another run)."""
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(), "what": "train.py"}))
    return proc


def write_trait(folder: Path, name: str, obj: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return folder


@dataclass
class Case:
    id: str
    build: Callable[[Env, Path], Action]
    """Make the bad input under the case's folder; return the command."""
    expect: tuple[str, ...]
    """Substrings the one-line message must contain (case-insensitive)."""


# ------------------------------------------------------------------------------------------------- train.py
def _finished(env: Env, tmp: Path, *extra: str) -> Action:
    return train(env, env.run_copy(tmp), *extra)


def _with_ckpt_only(env: Env, tmp: Path) -> Action:
    run = env.run_copy(tmp)
    shutil.rmtree(run / "final")
    return train(env, run, "trainer.resume=false")


def _locked_run(env: Env, tmp: Path) -> Action:
    run = tmp / "busy"
    env.procs.append(live_lock(run, tmp))
    return train(env, run)


def _bad_model(env: Env, tmp: Path, damage: Callable[[Path], None], which: int = 1) -> Action:
    model = model_copy(env.ft, tmp)
    damage(model)
    src = f"models.models.{which}.source={model}"
    return train(env, tmp / "r", src, cache_root=tmp / "acts")


def _corrupt_cache_for_train(env: Env, tmp: Path) -> Action:
    acts = Path(shutil.copytree(env.acts.parent, tmp / "acts"))
    shard = sorted((acts / env.acts.name / "shards").glob("*.safetensors"))[0]
    flip_byte(shard)
    return train(env, tmp / "r", cache_root=acts)


TRAIN_CASES = [
    Case("train-run-folder-is-a-file", lambda e, t: train(e, a_file(t)), ("is a file",)),
    Case("train-run-folder-under-a-file", lambda e, t: train(e, a_file(t) / "run"), ("lies under the file",)),
    Case("train-run-folder-unwritable", lambda e, t: train(e, Path("/proc/crosscoder-run")), ("not writable",)),
    Case(
        "train-cache-env-is-a-file",
        lambda e, t: _env_then(t, "CROSSCODER_CACHE", a_file(t), train(e, t / "r")),
        ("CROSSCODER_CACHE",),
    ),  # fmt: skip
    Case(
        "train-cache-env-under-a-file",
        lambda e, t: _env_then(t, "CROSSCODER_CACHE", a_file(t) / "c", train(e, t / "r")),
        ("CROSSCODER_CACHE",),
    ),  # fmt: skip
    Case(
        "train-wandb-online-no-key",
        lambda e, t: _no_wandb_key(t, train(e, t / "r", "logging.wandb_mode=online")),
        ("logging.wandb_mode=online", "api key"),
    ),  # fmt: skip
    Case(
        "train-wandb-online-no-network",
        lambda e, t: _wandb_unreachable(t, train(e, t / "r", "logging.wandb_mode=online")),
        ("cannot reach the w&b server",),
    ),  # fmt: skip
    Case(
        "train-finished-run-resume",
        lambda e, t: _finished(e, t, "trainer.resume=true"),
        ("finished run", "trainer.overwrite=true"),
    ),  # fmt: skip
    Case("train-finished-run-no-resume", lambda e, t: _finished(e, t), ("finished run",)),
    Case("train-checkpoints-without-resume", _with_ckpt_only, ("already holds checkpoints", "resume=true")),
    Case("train-run-folder-locked", _locked_run, ("is being written by", "pid")),
    Case(
        "train-model-truncated-safetensors",
        lambda e, t: _bad_model(e, t, lambda m: truncate(m / "model.safetensors")),
        ("model.safetensors", "truncated"),
    ),  # fmt: skip
    Case(
        "train-model-corrupted-header",
        lambda e, t: _bad_model(e, t, lambda m: flip_byte(m / "model.safetensors", 12)),
        ("model.safetensors", "corrupt"),
    ),  # fmt: skip
    Case(
        "train-model-empty-safetensors",
        lambda e, t: _bad_model(e, t, lambda m: (m / "model.safetensors").write_bytes(b"")),
        ("model.safetensors",),
    ),  # fmt: skip
    Case(
        "train-base-model-truncated",
        lambda e, t: _bad_model(e, t, lambda m: truncate(m / "model.safetensors", 0.9), which=0),
        ("truncated",),
    ),  # fmt: skip
    Case(
        "train-model-folder-missing",
        lambda e, t: train(e, t / "r", f"models.models.1.source={t}/nope/"),
        ("model folder not found",),
    ),  # fmt: skip
    Case(
        "train-model-folder-no-config",
        lambda e, t: _bad_model(e, t, lambda m: (m / "config.json").unlink()),
        ("no config.json",),
    ),  # fmt: skip
    Case(
        "train-adapter-missing",
        lambda e, t: train(e, t / "r", f"+models.models.1.adapter={t}"),
        ("adapter_config.json",),
    ),  # fmt: skip
    Case(
        "train-unknown-organism",
        lambda e, t: train(e, t / "r", "models.models.1.source=organism:nope", "models.models.1.kind=auto"),
        ("unknown organism",),
    ),  # fmt: skip
    Case("train-corrupt-cache-shard", _corrupt_cache_for_train, ("corrupt", "repair")),
    Case("train-k-too-large", lambda e, t: train(e, t / "r", "crosscoder.k=100000"), ("crosscoder.k",)),
    Case(
        "train-bad-architecture",
        lambda e, t: train(e, t / "r", "crosscoder.architecture=nonsense"),
        ("crosscoder.architecture",),
    ),  # fmt: skip
    Case("train-negative-lr", lambda e, t: train(e, t / "r", "trainer.lr=-1"), ("trainer.lr",)),
    Case("train-zero-batch", lambda e, t: train(e, t / "r", "trainer.batch_size=0"), ("trainer.batch_size",)),
    Case("train-bad-decay", lambda e, t: train(e, t / "r", "trainer.decay=sometimes"), ("trainer.decay",)),
    Case("train-bad-wandb-mode", lambda e, t: train(e, t / "r", "logging.wandb_mode=loud"), ("logging.wandb_mode",)),
    Case(
        "train-bf16-on-cpu", lambda e, t: train(e, t / "r", "trainer.autocast_bf16=true"), ("trainer.autocast_bf16",)
    ),  # fmt: skip
    Case(
        "train-one-model", lambda e, t: train(e, t / "r", f"models.models=[{{source:{e.base}}}]"), ("models.models",)
    ),  # fmt: skip
    Case(
        "train-hook-beyond-model",
        lambda e, t: train(e, t / "r", "data.hooks=[blocks.99.hook_resid_post]", cache_root=t / "acts"),
        ("blocks.99",),
    ),  # fmt: skip
]


def _env_then(tmp: Path, name: str, value: Path, action: Action) -> Action:
    def go() -> Any:
        old = os.environ.get(name)
        os.environ[name] = str(value)
        try:
            return action()
        finally:
            os.environ.pop(name) if old is None else os.environ.__setitem__(name, old)

    return go


def _no_wandb_key(tmp: Path, action: Action) -> Action:
    def go() -> Any:
        saved = {k: os.environ.pop(k, None) for k in ("WANDB_MODE", "WANDB_API_KEY")}
        os.environ["NETRC"] = str(tmp / "no-netrc")
        try:
            return action()
        finally:
            os.environ.pop("NETRC")
            os.environ.update({k: v for k, v in saved.items() if v is not None})

    return go


def _wandb_unreachable(tmp: Path, action: Action) -> Action:
    def go() -> Any:
        saved = os.environ.pop("WANDB_MODE", None)
        os.environ.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")  # the discard port: refused
        try:
            return action()
        finally:
            for k in ("WANDB_API_KEY", "WANDB_BASE_URL"):
                os.environ.pop(k)
            if saved is not None:
                os.environ["WANDB_MODE"] = saved

    return go


# ----------------------------------------------------------------------------------------------- analyze.py
def _run_damaged(env: Env, tmp: Path, damage: Callable[[Path], None], *overrides: str) -> Action:
    run = env.run_copy(tmp)
    damage(run)
    return analyze(env, *overrides, run=run)


def _cache_damaged(env: Env, tmp: Path, damage: Callable[[Path], None], *overrides: str) -> Action:
    acts = Path(shutil.copytree(env.acts, tmp / "acts"))
    damage(acts)
    return analyze(env, f"activations={acts}", *overrides, run=env.run_copy(tmp))


def _first_shard(acts: Path) -> Path:
    return sorted((acts / "shards").glob("*.safetensors"))[0]


def _bad_traits(env: Env, tmp: Path, obj: Any) -> Action:
    folder = write_trait(tmp / "traits", "my_trait", obj)
    return analyze(env, "labels.enabled=true", f"labels.trait_dirs=[{folder}]", run=env.run_copy(tmp))


def _analysis_locked(env: Env, tmp: Path) -> Action:
    run = env.run_copy(tmp)
    proc = live_lock(run, tmp)
    (run / ".lock").rename(run / ".analysis.lock")
    env.procs.append(proc)
    return analyze(env, run=run)


def _training_locked(env: Env, tmp: Path) -> Action:
    run = env.run_copy(tmp)
    env.procs.append(live_lock(run, tmp))
    return analyze(env, run=run)


def _changed_model(env: Env, tmp: Path) -> Action:
    run = env.run_copy(tmp)
    model = model_copy(env.ft, tmp)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    info = json.loads((run / "run.json").read_text())
    info["models"][1]["source"] = str(model)
    (run / "run.json").write_text(json.dumps(info))
    return analyze(env, "evidence.baseline=true", run=run)


WEIGHTS = "final/crosscoder.safetensors"
ANALYZE_CASES = [
    Case("analyze-run-missing", lambda e, t: analyze(e, run=t / "nope"), ("does not exist",)),
    Case(
        "analyze-run-without-final",
        lambda e, t: _run_damaged(e, t, lambda r: shutil.rmtree(r / "final")),
        ("no finished checkpoint",),
    ),  # fmt: skip
    Case(
        "analyze-run-without-run-json",
        lambda e, t: _run_damaged(e, t, lambda r: (r / "run.json").unlink()),
        ("no run.json",),
    ),  # fmt: skip
    Case(
        "analyze-run-json-malformed",
        lambda e, t: _run_damaged(e, t, lambda r: (r / "run.json").write_text("{")),
        ("malformed json", "run.json"),
    ),  # fmt: skip
    Case(
        "analyze-final-weights-flipped-byte",
        lambda e, t: _run_damaged(e, t, lambda r: flip_byte(r / WEIGHTS)),
        ("crosscoder.safetensors is corrupt", "python train.py"),
    ),  # fmt: skip
    Case(
        "analyze-final-weights-truncated",
        lambda e, t: _run_damaged(e, t, lambda r: truncate(r / WEIGHTS)),
        ("wrong size", "rebuild it with"),
    ),  # fmt: skip
    Case(
        "analyze-final-config-edited",
        lambda e, t: _run_damaged(
            e,
            t,
            lambda r: (r / "final/config.json").write_text((r / "final/config.json").read_text().replace("64", "65")),
        ),
        ("config.json",),
    ),  # fmt: skip
    Case(
        "analyze-final-checksums-malformed",
        lambda e, t: _run_damaged(e, t, lambda r: (r / "final/checksums.json").write_text("[")),
        ("malformed json",),
    ),  # fmt: skip
    Case(
        "analyze-cache-shard-flipped-byte",
        lambda e, t: _cache_damaged(e, t, lambda a: flip_byte(_first_shard(a))),
        ("corrupt", "python -m crosscoder.data.cache repair"),
    ),  # fmt: skip
    Case(
        "analyze-cache-shard-flipped-full-verify",
        lambda e, t: _cache_damaged(e, t, lambda a: flip_byte(_first_shard(a)), "verify=full"),
        ("sha256 checksum mismatch",),
    ),  # fmt: skip
    Case(
        "analyze-cache-shard-truncated",
        lambda e, t: _cache_damaged(e, t, lambda a: truncate(_first_shard(a))),
        ("corrupt",),
    ),  # fmt: skip
    Case(
        "analyze-cache-shard-missing",
        lambda e, t: _cache_damaged(e, t, lambda a: _first_shard(a).unlink()),
        ("shard_00000", "corrupt"),
    ),  # fmt: skip
    Case(
        "analyze-cache-manifest-malformed",
        lambda e, t: _cache_damaged(e, t, lambda a: (a / "manifest.json").write_text("{oops")),
        ("manifest.json",),
    ),  # fmt: skip
    Case(
        "analyze-activations-missing",
        lambda e, t: analyze(e, f"activations={t}/nope", run=e.run_copy(t)),
        ("not found",),
    ),  # fmt: skip
    Case(
        "analyze-out-dir-is-a-file",
        lambda e, t: analyze(e, f"out_dir={a_file(t)}", run=e.run_copy(t)),
        ("analyze.out_dir", "is a file"),
    ),  # fmt: skip
    Case(
        "analyze-out-dir-under-a-file",
        lambda e, t: analyze(e, f"out_dir={a_file(t)}/x", run=e.run_copy(t)),
        ("lies under the file",),
    ),  # fmt: skip
    Case(
        "analyze-out-dir-unwritable",
        lambda e, t: analyze(e, "out_dir=/proc/crosscoder-analysis", run=e.run_copy(t)),
        ("not writable",),
    ),  # fmt: skip
    Case(
        "analyze-trait-dir-missing",
        lambda e, t: analyze(e, "labels.enabled=true", f"labels.trait_dirs=[{t}/no]", run=e.run_copy(t)),
        ("trait folder not found", "labels.trait_dirs"),
    ),  # fmt: skip
    Case(
        "analyze-unknown-trait",
        lambda e, t: analyze(e, "labels.enabled=true", "labels.traits=[no_such_trait]", run=e.run_copy(t)),
        ("analyze.labels.traits", "no_such_trait"),
    ),  # fmt: skip
    Case("analyze-trait-file-malformed", lambda e, t: _bad_traits(e, t, "{not json"), ("my_trait.json",)),
    Case(
        "analyze-trait-file-missing-field", lambda e, t: _bad_traits(e, t, {"questions": ["q?"]}), ("my_trait.json",)
    ),  # fmt: skip
    Case("analyze-trait-file-not-object", lambda e, t: _bad_traits(e, t, [1, 2]), ("my_trait.json",)),
    Case(
        "analyze-wandb-online-no-key",
        lambda e, t: _no_wandb_key(t, analyze(e, "export.wandb_mode=online", run=e.run_copy(t))),
        ("export.wandb_mode=online", "api key"),
    ),  # fmt: skip
    Case("analyze-output-locked", _analysis_locked, ("is being written by",)),
    Case("analyze-run-being-trained", _training_locked, ("is being written by",)),
    Case(
        "analyze-lens-hook-unknown",
        lambda e, t: analyze(e, "lens_hook=blocks.0.hook_resid_post", run=e.run_copy(t)),
        ("analyze.lens_hook",),
    ),  # fmt: skip
    Case("analyze-bad-verify-mode", lambda e, t: analyze(e, "verify=sometimes"), ("analyze.verify",)),
    Case("analyze-bad-device", lambda e, t: analyze(e, "device=tpu"), ("analyze.device",)),
    Case("analyze-moved-flat-key", lambda e, t: analyze(e, "n_steer=2"), ("analyze.n_steer", "steering")),
    Case("analyze-model-weights-changed", _changed_model, ("weights changed",)),
    Case("analyze-no-runs-at-all", lambda e, t: _latest_missing(e, t), ("python train.py",)),
]


def _latest_missing(env: Env, tmp: Path) -> Action:
    def go() -> Any:
        from crosscoder.analysis.run import run_analysis
        from crosscoder.config import compose_analyze

        cfg = compose_analyze(REPO / "configs", [f"runs_root={tmp}/empty", "labels.enabled=false"])
        return run_analysis(cfg)

    return go


# ---------------------------------------------------------------------- analysis / data / organism commands
def _analysis_copy(env: Env, tmp: Path, damage: Callable[[Path], None]) -> Path:
    folder = Path(shutil.copytree(env.run / "analysis", tmp / "analysis"))
    damage(folder)
    return folder


def _analysis_main(*argv: str) -> Action:
    from crosscoder.analysis.cli import main

    return command(main, *argv)


def _data_main(*argv: str) -> Action:
    from crosscoder.data.cli import main

    return command(main, *argv)


def _organisms(*argv: str) -> Action:
    from crosscoder.personas.organisms.__main__ import main

    return command(main, *argv)


def _saelens_file(folder: Path) -> Path:
    return sorted((folder / "saelens").rglob("*.safetensors"))[0]


COMMAND_CASES = [
    Case(
        "report-summary-edited",
        lambda e, t: _analysis_main(
            "report",
            str(
                _analysis_copy(e, t, lambda f: (f / "summary.json").write_text((f / "summary.json").read_text() + "\n"))
            ),
        ),
        ("summary.json", "python analyze.py"),
    ),  # fmt: skip
    Case(
        "report-latents-flipped",
        lambda e, t: _analysis_main("report", str(_analysis_copy(e, t, lambda f: flip_byte(f / "latents.json", 40)))),
        ("latents.json is corrupt",),
    ),  # fmt: skip
    Case("report-folder-missing", lambda e, t: _analysis_main("report", str(t / "nope")), ("does not exist",)),
    Case(
        "verify-saelens-export-flipped",
        lambda e, t: _analysis_main("verify", str(_analysis_copy(e, t, lambda f: flip_byte(_saelens_file(f))))),
        ("sae_weights.safetensors is corrupt",),
    ),  # fmt: skip
    Case(
        "verify-summary-truncated",
        lambda e, t: _analysis_main("verify", str(_analysis_copy(e, t, lambda f: truncate(f / "summary.json")))),
        ("summary.json has the wrong size",),
    ),  # fmt: skip
    Case(
        "verify-no-manifest",
        lambda e, t: _analysis_main("verify", str(_analysis_copy(e, t, lambda f: (f / "checksums.json").unlink()))),
        ("no checksums.json",),
    ),  # fmt: skip
    Case(
        "cache-verify-flipped-shard",
        lambda e, t: _data_main("cache", "verify", str(_flipped_cache(e, t))),
        ("corrupt", "repair"),
    ),  # fmt: skip
    Case(
        "layerscan-out-under-a-file",
        lambda e, t: _data_main(
            "layerscan", "--base", str(e.base), "--ft", str(e.ft), "--out", str(a_file(t) / "scan")
        ),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case(
        "layerscan-model-missing",
        lambda e, t: _data_main("layerscan", "--base", str(e.base), "--ft", f"{t}/nope/", "--out", str(t / "scan")),
        ("model folder not found",),
    ),  # fmt: skip
    Case(
        "layerscan-model-truncated",
        lambda e, t: _data_main(
            "layerscan", "--base", str(e.base), "--ft", str(_damaged_model(e, t)), "--out", str(t / "scan")
        ),
        ("truncated",),
    ),  # fmt: skip
    Case(
        "layerscan-unknown-organism",
        lambda e, t: _data_main("layerscan", "--base", str(e.base), "--ft", "organism:nope", "--out", str(t / "scan")),
        ("unknown organism",),
    ),  # fmt: skip
    Case("organism-build-unknown", lambda e, t: _organisms("build", "nope"), ("unknown organism",)),
    Case("organism-show-unknown", lambda e, t: _organisms("show", "nope"), ("unknown organism",)),
]


def _flipped_cache(env: Env, tmp: Path) -> Path:
    acts = Path(shutil.copytree(env.acts, tmp / "acts"))
    flip_byte(_first_shard(acts))
    return acts


def _damaged_model(env: Env, tmp: Path) -> Path:
    model = model_copy(env.ft, tmp)
    truncate(model / "model.safetensors", 0.7)
    return model


# -------------------------------------------------------------------------------------------------- bench
def _recovery(*argv: str) -> Action:
    from crosscoder.bench.recovery import main

    return command(main, *argv)


def _bench(*argv: str) -> Action:
    from crosscoder.bench.__main__ import main

    return command(main, *argv)


def _sft(tmp: Path, text: str) -> str:
    path = tmp / "set.jsonl"
    path.write_text(text)
    return f"{path}:sycophancy"


GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
BENCH_CASES = [
    Case("recovery-sft-empty", lambda e, t: _recovery("--kinds", "sft", "--sft", _sft(t, "")), ("empty",)),
    Case(
        "recovery-sft-wrong-schema",
        lambda e, t: _recovery("--kinds", "sft", "--sft", _sft(t, '{"text": "x"}\n')),
        ("field messages",),
    ),  # fmt: skip
    Case(
        "recovery-sft-malformed-json",
        lambda e, t: _recovery("--kinds", "sft", "--sft", _sft(t, "{oops\n")),
        ("malformed json",),
    ),  # fmt: skip
    Case(
        "recovery-sft-bad-role",
        lambda e, t: _recovery(
            "--kinds", "sft", "--sft", _sft(t, json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
        ),
        ("role",),
    ),  # fmt: skip
    Case(
        "recovery-sft-no-assistant",
        lambda e, t: _recovery(
            "--kinds", "sft", "--sft", _sft(t, json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
        ),
        ("assistant",),
    ),  # fmt: skip
    Case("recovery-sft-missing-file", lambda e, t: _recovery("--sft", f"{t}/nope.jsonl:sycophancy"), ("not found",)),
    Case("recovery-sft-not-file-trait", lambda e, t: _recovery("--sft", "just_a_file"), ("FILE:TRAIT",)),
    Case(
        "recovery-sft-unknown-trait",
        lambda e, t: _recovery(
            "--kinds", "sft", "--sft", _sft(t, GOOD_LINE + "\n").replace(":sycophancy", ":no_trait")
        ),
        ("no_trait",),
    ),  # fmt: skip
    Case("recovery-unknown-trait", lambda e, t: _recovery("--traits", "no_trait"), ("--traits", "no_trait")),
    Case("recovery-trait-dir-missing", lambda e, t: _recovery("--trait-dir", f"{t}/nope"), ("trait folder",)),
    Case(
        "recovery-out-under-a-file",
        lambda e, t: _recovery("--out", str(a_file(t) / "r.json")),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case(
        "recovery-rescore-without-results",
        lambda e, t: _recovery("--rescore", "--out", str(t / "r.json")),
        ("--out", "not found"),
    ),  # fmt: skip
    Case(
        "bench-all-out-under-a-file",
        lambda e, t: _bench("all", "--out", str(a_file(t) / "b.json")),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case("bench-all-out-is-a-folder", lambda e, t: _bench("all", "--out", str(t)), ("is a folder",)),
    Case(
        "bench-analysis-out-under-a-file",
        lambda e, t: _bench("analysis", "--out", str(a_file(t) / "b.json")),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case(
        "bench-harvest-out-under-a-file",
        lambda e, t: _bench("harvest", "--out", str(a_file(t) / "b.json")),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case(
        "bench-xc-step-out-under-a-file",
        lambda e, t: _bench("xc-step", "--out", str(a_file(t) / "b.json")),
        ("--out", "lies under the file"),
    ),  # fmt: skip
    Case("bench-xc-step-out-is-a-folder", lambda e, t: _bench("xc-step", "--out", str(t)), ("is a folder",)),
]

CASES = TRAIN_CASES + ANALYZE_CASES + COMMAND_CASES + BENCH_CASES


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tiny models, one finished run (2 checkpoints, final/, an analysis with SAELens exports) and its cache."""
    from crosscoder.models import load_model, make_tiny_llama
    from crosscoder.pipeline import run_train

    root = tmp_path_factory.mktemp("battery")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSCODER_CACHE", str(root / "cache"))
    mp.setenv("WANDB_MODE", "disabled")
    base = make_tiny_llama(root / "base", seed=0, name="base")
    ft = make_tiny_llama(root / "ft", seed=1, name="ft")
    e = Env(root, Path(base.source), Path(ft.source), root / "run", root, [])
    run_train(compose_train([*e.train_overrides(), "trainer.checkpoint_every=5"]), e.run)
    e.acts = Path(json.loads((e.run / "run.json").read_text())["activations"])
    e.models = [load_model(base), load_model(ft)]
    analyze(e, "export.saelens=true", models=True)()
    yield e
    for proc in e.procs:
        proc.kill()
        proc.wait()
    mp.undo()


def test_the_shared_run_is_complete(env: Env) -> None:
    assert (env.run / "final" / "checksums.json").is_file() and (env.run / "analysis" / "checksums.json").is_file()
    assert list((env.run / "checkpoints").glob("step_*/checksums.json"))
    assert list((env.run / "analysis" / "saelens").rglob("*.safetensors"))
    assert not (env.run / ".lock").exists() and not (env.run / ".analysis.lock").exists()
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clean_line(
    case: Case, env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CROSSCODER_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["battery"])
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    action = case.build(env, case_dir)
    roots = (env.run, env.acts, env.base, env.ft, case_dir)
    before = snapshot(*roots)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(action)
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_USER_ERROR, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]  # progress bars and log lines aside
    assert len(lines) == 1 and lines[0].startswith("error: ") and err.rstrip().endswith(lines[0]), err
    for word in case.expect:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert snapshot(*roots) == before, "an earlier output changed"


# ------------------------------------------------------------------------ through the real entry points
def _python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    full.pop("CROSSCODER_DEBUG", None)
    full.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("where", "expect"),
    [(lambda t: f"hydra.run.dir={a_file(t)}/run", "lies under the file")],
    ids=["run-dir-under-a-file"],  # the other run-folder cases run in-process above (the callback's check)
)
def test_train_py_refuses_the_run_folder_before_hydra_writes(
    env: Env, tmp_path: Path, where: Callable[[Path], str], expect: str
) -> None:
    override = where(tmp_path)
    before = snapshot(tmp_path)
    proc = _python([str(REPO / "train.py"), *env.train_overrides(), override], tmp_path)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: hydra.run.dir") and expect in lines[0], proc.stderr
    assert snapshot(tmp_path) == before


def test_train_py_refuses_a_finished_run_before_rewriting_its_config(env: Env, tmp_path: Path) -> None:
    run = env.run_copy(tmp_path)
    before = snapshot(run)
    proc = _python([str(REPO / "train.py"), *env.train_overrides(), f"hydra.run.dir={run}", "trainer.lr=1e-2",
                    "trainer.resume=true"], tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_USER_ERROR and "finished run" in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0
    assert snapshot(run) == before  # .hydra/config.yaml too


# ------------------------------------------------------------------- what the battery's refusals protect
def _final_tensors(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "crosscoder.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    import torch

    ta, tb = _final_tensors(a), _final_tensors(b)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_failed_analysis_leaves_the_previous_one_intact(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crosscoder.analysis.run as run_mod

    run = env.run_copy(tmp_path)
    before = snapshot(run)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("crash mid-analysis")

    monkeypatch.setattr(run_mod, "make_summary", boom)
    with pytest.raises(RuntimeError, match="crash mid-analysis"):
        analyze(env, run=run)()
    assert snapshot(run) == before
    assert not any(p.name.startswith((".analysis", ".lock")) for p in run.iterdir())  # no temp folder, no lock


def test_analysis_replaces_its_folder_atomically_with_checksums(env: Env, tmp_path: Path) -> None:
    from crosscoder.io import verify_checksums

    run = env.run_copy(tmp_path)
    (run / "analysis" / "stale.txt").write_text("from an earlier analysis")
    result = analyze(env, "export.saelens=true", run=run)()
    out = run / "analysis"
    assert result.out_dir == out and not (out / "stale.txt").exists()
    assert json.loads((out / "summary.json").read_text())["out_dir"] == str(out)
    assert verify_checksums(out, "analysis folder", required=True) >= 5  # tables, summary, candidates, exports
    assert all(p.is_file() and out in p.parents for p in result.presented.saelens[0].iterdir())
    assert not any(p.name.startswith((".analysis", ".lock")) for p in run.iterdir())


def test_overwrite_retrains_a_finished_run_bit_identically(env: Env, tmp_path: Path) -> None:
    run = env.run_copy(tmp_path)
    run_cli(train(env, run, "trainer.checkpoint_every=5", "trainer.overwrite=true"))
    _assert_same_weights(run, env.run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000010", "step_0000015"]


def test_resume_after_kill_9_takes_over_the_stale_lock_bit_identically(env: Env, tmp_path: Path) -> None:
    import socket

    run = env.run_copy(tmp_path)
    shutil.rmtree(run / "final")  # killed after step 15's checkpoint: the lock of a dead process is left behind
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "what": "train.py"}))
    run_cli(train(env, run, "trainer.checkpoint_every=5", "trainer.resume=true"))
    _assert_same_weights(run, env.run)
    assert not (run / ".lock").exists()


def test_a_lock_held_on_another_host_is_refused_naming_the_file(tmp_path: Path) -> None:
    from crosscoder.errors import ConfigError
    from crosscoder.runs import run_lock

    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "what": "train.py"}))
    with (
        pytest.raises(ConfigError, match=r"pid 1 on elsewhere; delete .*\.lock if that run is gone"),
        run_lock(tmp_path),
    ):
        pass


def test_default_run_folders_of_one_second_differ() -> None:
    from hydra import compose, initialize_config_dir

    from crosscoder.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        dirs = {str(compose(config_name="config", return_hydra_config=True).hydra.run.dir) for _ in range(5)}
    assert len(dirs) == 5


def test_model_hashes_are_cached_in_the_cache_not_the_model_folder(env: Env) -> None:
    assert not list(env.base.glob(".crosscoder_hash*")) and not list(env.ft.glob(".crosscoder_hash*"))
    assert list((env.root / "cache" / "model-hashes").glob("*.json"))


def test_latest_is_written_beside_a_run_outside_the_runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crosscoder import runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "RUNS_ROOT", Path("runs"))
    (tmp_path / "scratch" / "run1" / "final").mkdir(parents=True)
    runs.update_latest(tmp_path / "scratch" / "run1")
    assert not (tmp_path / "runs").exists()
    assert runs.latest_run(tmp_path / "scratch") == (tmp_path / "scratch" / "run1").resolve()
    (tmp_path / "runs" / "demo" / "r" / "final").mkdir(parents=True)
    runs.update_latest(Path("runs/demo/r"))
    assert (tmp_path / "runs" / "LATEST").read_text().strip() == str((tmp_path / "runs/demo/r").resolve())


def test_sampled_cache_verification_hashes_a_subset(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import crosscoder.data.cache as C

    manifest = C.read_manifest(env.acts)
    total = len(manifest.shards)
    assert C.verify_cache(env.acts, manifest, sample=True) == total  # small caches are hashed in full
    monkeypatch.setattr(C, "SAMPLE_BYTES", 1)
    assert total > 1 and C.verify_cache(env.acts, manifest, sample=True) == 1
    assert C.verify_cache(env.acts, manifest) == total
