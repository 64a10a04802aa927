"""Trajectory benchmark plumbing on tiny models: options, one harvest for the whole series, one crosscoder per
prefix that never sees a later checkpoint, forecasts from each prefix, the hiding result and the targets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from crosscoder.bench import trajectory as T
from crosscoder.bench import trajectory_runs as R
from crosscoder.data import api as data_api
from crosscoder.errors import ConfigError
from crosscoder.io import read_json
from crosscoder.models import make_tiny_llama
from crosscoder.xc.model import Crosscoder

ROOT = Path(__file__).resolve().parents[1]


def test_bad_options_are_refused() -> None:
    base = ["--config-dir", str(ROOT / "configs")]
    with pytest.raises(ConfigError, match="--series: 'demo' is not a checkpoint-series organism"):
        T.parse_args([*base, "--series", "demo"])
    with pytest.raises(ConfigError, match="--measure"):
        T.parse_args([*base, "--measure", "judge"])
    with pytest.raises(ConfigError, match="--window: 1"):
        T.parse_args([*base, "--window", "1"])
    opts = T.parse_args([*base, "--quick", "--series", "series-pirate,hiding-cat_obsession", "trainer.steps=9"])
    assert opts.series == ["series-pirate", "hiding-cat_obsession"] and opts.overrides == ["trainer.steps=9"]
    # crosscoders of another scale are never reused: the overrides key the run folder
    plain = T.parse_args([*base, "--quick", "--series", "series-pirate"])
    assert T.run_root(plain, "series-pirate").parent.name.startswith("quick-")
    assert T.run_root(opts, "series-pirate").parent.name.startswith("quick-")
    assert T.run_root(plain, "x") != T.run_root(opts, "x")
    assert T.run_root(T.parse_args([*base, "--series", "series-pirate"]), "x") == Path("runs/trajectory/default/x")
    assert T.run_root(opts, "x") != T.run_root(T.parse_args([*base, "--quick", "trainer.steps=10"]), "x")


def test_series_specs_and_composed_config() -> None:
    specs = R.series_specs("series-pirate", 6)
    assert [s.name for s in specs] == ["base", "c1", "c2", "c3", "c4", "c5", "c6"]
    assert specs[3].source == "organism:series-pirate@c3"
    cfg = R.compose_train(ROOT / "configs", "t", specs, True, ["trainer.steps=9"])
    assert cfg.models.models == specs and cfg.trainer.steps == 9 and cfg.data.n_tokens == 3000
    assert cfg.crosscoder.n_latents == 512 and cfg.logging.wandb_mode == "disabled"


def test_prefix_crosscoders_never_see_later_checkpoints(tiny_spec, tiny_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    specs = [tiny_spec, *(make_tiny_llama(tiny_dir / f"bench_c{k}", seed=30 + k, name=f"c{k}") for k in (1, 2, 3))]
    ov = ["data.hooks=[blocks.2.hook_resid_post]", "data.n_tokens=600", "data.seq_len=40", "data.shard_tokens=300",
          f"data.cache_root={tmp_path / 'cache'}", "data.norm_sample_tokens=300", "trainer.steps=4",
          "trainer.batch_size=64", "trainer.warmup_steps=1", "trainer.l1_warmup_steps=1", "trainer.log_every=2",
          "trainer.checkpoint_every=100", "crosscoder.n_latents=32", "crosscoder.k=4", "trainer.dead_tokens=1000"]  # fmt: skip
    cfg = R.compose_train(ROOT / "configs", "tiny-series", specs, False, ov)
    harvests: list[list[str]] = []
    real = data_api._harvest_to_disk

    def counted(m, *a, **k):  # type: ignore[no-untyped-def]
        harvests.append([x.name for x in m])
        return real(m, *a, **k)

    monkeypatch.setattr(data_api, "_harvest_to_disk", counted)
    runs, acts, seconds = R.train_prefixes(cfg, tmp_path / "runs")
    assert harvests == [["base"], ["c1"], ["c2"], ["c3"]]  # each model once, alone; every prefix merged from them
    assert set(seconds) == {"harvest", "merge", "train"} and acts.model_names == ["base", "c1", "c2", "c3"]
    singles = [Path(p) for p in read_json(acts.path / "manifest.json")["harvest"]["merged_from"]]
    for k, run in enumerate(runs, start=1):
        info = read_json(run / "run.json")
        assert info["model_names"] == ["base", "c1", "c2", "c3"][: k + 1]
        assert Crosscoder.load(run / "final").cfg.n_models == k + 1
        manifest = read_json(Path(info["activations"]) / "manifest.json")
        assert [Path(p) for p in manifest["harvest"]["merged_from"]] == singles[: k + 1]
    # another series on the same base: the base's cache is reused, only the new checkpoint runs
    d1 = make_tiny_llama(tiny_dir / "bench_d1", seed=40, name="c1")
    cfg2 = R.compose_train(ROOT / "configs", "tiny-series-2", [specs[0], d1], False, ov)
    R.train_prefixes(cfg2, tmp_path / "runs2")
    assert harvests[4:] == [["c1"]]
    unit = torch.nn.functional.normalize(torch.randn(64), dim=0)
    prefixes = [SimpleNamespace(stats=R.prefix_stats(run, unit, "t")) for run in runs]
    assert [len(p.stats.signal["t"]["assistant"]) for p in prefixes] == [2, 3, 4]
    steps, beh = [0.0, 8.0, 16.0, 24.0], [0.0, 0.1, 0.5, 0.9]
    fc = T._forecasts("t", steps, prefixes, beh, 3, (0.0, 1.0))
    assert [(f.origin, f.target) for f in fc] == [(2, 3)]
    # the forecast of c3 comes from the crosscoder of base..c2: replacing the c3 crosscoder changes nothing
    other = T._forecasts("t", steps, [prefixes[0], prefixes[1], prefixes[0]], beh, 3, (0.0, 1.0))
    assert other[0].predicted == fc[0].predicted
    latents = T._latent_forecasts("t", steps, prefixes, 3)
    assert len(latents) == 10 and all(r["origin"] == 2 for r in latents)
    # resuming reuses every finished prefix crosscoder
    import crosscoder.pipeline

    monkeypatch.setattr(crosscoder.pipeline, "run_train", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(data_api, "_harvest_to_disk", lambda *a, **k: pytest.fail("re-harvested"))
    assert R.train_prefixes(cfg, tmp_path / "runs")[0] == runs


def test_hiding_result_and_targets() -> None:
    rates = {"heldout": [0.0, 0.9, 1.0, 1.0, 1.0], "eval_style": [0.0, 0.8, 1.0, 0.4, 0.2],
             "eval_style_unseen": [0.0, 0.5, 0.6, 0.6, 0.5]}  # fmt: skip
    beh = SimpleNamespace(values=lambda m, ps: rates[ps])
    h = T.hiding_result(beh, True)
    assert h["eval_style"]["fall"] == pytest.approx(0.8) and h["eval_style"]["peak_at"] == 2
    assert h["eval_style_unseen"]["fall"] == pytest.approx(1 / 6) and h["target_met"]
    assert not T.hiding_result(beh, False)["target_met"]

    def rec(name: str, f: float, p: float, lin: float, lead: int | None, hiding: bool = False) -> dict[str, object]:
        return {"series": name, "forecast_mae": f, "persistence_mae": p, "behaviour_linear_mae": lin,
                "lead_checkpoints": lead, "hiding": hiding, "hiding_result": h}  # fmt: skip

    recs = [rec("a", 0.05, 0.1, 0.08, 2), rec("b", 0.05, 0.1, 0.04, 3), rec("c", 0.05, 0.1, 0.06, 1),
            rec("d", 0.05, 0.2, 0.3, 2), rec("h", 0.01, 0.5, 0.5, None, hiding=True)]  # fmt: skip
    t = T.targets(recs)
    assert t["forecast_beats_baselines"]["series"] == ["a", "c", "d", "h"] and t["forecast_beats_baselines"]["met"]
    assert t["early_warning_2_checkpoints"] == {"series": ["a", "b", "d"], "of": 4, "met": True}
    assert t["hiding"]["met"]
    assert "0.050" in T.format_table([{**r, "flagged_at": 1, "behaviour_half_at": 3, "persona_found_at_last": True,
                                        "seconds": 1.0} for r in recs])  # fmt: skip


def test_prefix_analyses_share_the_loaded_models(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def analyse(run_dir, trait, config_dir, ov, models):  # type: ignore[no-untyped-def]
        seen.append(list(models))
        assert ov == R.analyze_overrides([], quick=True) and "next_token.n_candidates=5" in ov
        return run_dir.name == "upto-c2", [trait]

    monkeypatch.setattr(R, "analyse_prefix", analyse)
    monkeypatch.setattr(R, "prefix_stats", lambda run_dir, unit, trait: run_dir.name)
    runs = [Path(f"upto-c{k}") for k in (1, 2, 3)]
    out = R.analyse_prefixes(
        runs, "t", torch.zeros(2), ROOT, R.analyze_overrides([], quick=True), ["b", "m1", "m2", "m3"]
    )
    assert seen == [["b", "m1"], ["b", "m1", "m2"], ["b", "m1", "m2", "m3"]]
    assert [p.flagged for p in out] == [False, True, False] and [p.k for p in out] == [1, 2, 3]
    assert all(p.seconds >= p.analysis_seconds >= 0 for p in out)
    assert R.analyze_overrides(["labels.threshold=0.5"])[-1] == "labels.threshold=0.5"
    assert "next_token.n_candidates=5" not in R.analyze_overrides([])
