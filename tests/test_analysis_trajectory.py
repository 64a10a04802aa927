"""The trajectory analysis of a checkpoint series on tiny models: a planted persona growing over three checkpoints,
analysed by `run_analysis` as a 4-model run — per-checkpoint columns, trajectory.json, forecast.json (with a
behaviour record), the report section, the plots, and the refusals (steps not increasing, too few checkpoints)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import PLANT_HOOK, PLANT_LAYER, PLANT_TRAIT, plant_conditional

from crosscoder.analysis.config import (
    AnalyzeConfig,
    ExportConfig,
    LabelConfig,
    RankConfig,
    SpliceConfig,
    SteeringConfig,
    TrajectoryConfig,
)
from crosscoder.analysis.run import run_analysis
from crosscoder.errors import ConfigError

SCALES = (0.05, 0.1, 0.15)
STEPS = [0.0, 10.0, 20.0, 30.0]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from crosscoder.config import ModelSetConfig, TrainConfig
    from crosscoder.data.config import DataConfig
    from crosscoder.models import ModelSpec, load_model, make_tiny_llama
    from crosscoder.personas.traits import get_trait
    from crosscoder.personas.vectors import compute_persona_vectors
    from crosscoder.pipeline import run_train
    from crosscoder.xc.config import CrosscoderConfig, LoggingConfig, TrainerConfig

    root = tmp_path_factory.mktemp("series")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSCODER_CACHE", str(root / "cache"))
    base_spec = make_tiny_llama(root / "base", seed=0, name="base")
    base = load_model(base_spec)
    pv = compute_persona_vectors(base, get_trait(PLANT_TRAIT), use_cache=False)
    direction, trigger = pv.for_hook(PLANT_HOOK).float(), pv.for_hook(f"blocks.{PLANT_LAYER}.hook_resid_pre").float()
    specs = [base_spec]
    for k, scale in enumerate(SCALES, start=1):
        plant_conditional(root / "base", root / f"c{k}", PLANT_LAYER, direction, trigger, scale)
        specs.append(ModelSpec(source=str(root / f"c{k}"), kind="hf", name=f"c{k}"))
    cfg = TrainConfig(name="series", models=ModelSetConfig(models=specs),
                      data=DataConfig(hooks=[PLANT_HOOK], n_tokens=8000, seq_len=64, cache_root=str(root / "acts"),
                                      shard_tokens=4096),
                      crosscoder=CrosscoderConfig(architecture="l1", n_latents=128, l1_coeff=1.0),
                      trainer=TrainerConfig(steps=500, batch_size=256, lr=3e-3, warmup_steps=20, l1_warmup_steps=50,
                                            checkpoint_every=0, log_every=100),
                      logging=LoggingConfig(wandb_mode="disabled", measure_mfu=False, progress=False))  # fmt: skip
    run_dir = root / "run"
    run_train(cfg, run_dir)
    models = [base, *(load_model(s) for s in specs[1:])]
    behaviour = root / "behaviour.json"
    behaviour.write_text(json.dumps({"trait": PLANT_TRAIT, "prompt_sets": ["heldout"], "n_questions": 4,
                                     "max_new_tokens": 8, "vectors": "base", "records": [
        {"checkpoint": n, "step": s, "prompt_set": "heldout", "keyword_rate": r, "keyword_density": None,
         "projection": 0.0, "projection_std": 0.0, "hook": PLANT_HOOK}
        for n, s, r in zip(["base", "c1", "c2", "c3", "c4"], [*STEPS, 40.0], [0.0, 0.1, 0.3, 0.5, 0.7], strict=True)]}))  # fmt: skip
    acfg = AnalyzeConfig(run_dir=str(run_dir), labels=LabelConfig(traits=[PLANT_TRAIT, "pirate", "sycophancy"],
                         questions=3, persona_questions=6), rank=RankConfig(n_candidates=6),
                         splice=SpliceConfig(enabled=False), steering=SteeringConfig(enabled=False),
                         export=ExportConfig(saelens=False, wandb_mode="disabled"),
                         trajectory=TrajectoryConfig(steps=STEPS, n_candidates=3, top_latents=4,
                                                     behaviour=str(behaviour)))  # fmt: skip
    result = run_analysis(acfg, models=models)
    yield run_dir, models, acfg, result
    mp.undo()


def test_series_columns_candidates_and_trajectory_file(series) -> None:  # type: ignore[no-untyped-def]
    run_dir, _, _, res = series
    df, out = res.table, res.out_dir
    for name in ("base", "c1", "c2", "c3"):
        assert f"freq_on_{name}" in df and f"dec_norm_{name}" in df
    assert "attr_series_c3" in df and "series_score" in df and "peak_at" in df and "series_rank" in df
    # the last checkpoint's attribution is the model-diff attribution of the pair (base, c3) on the same tokens
    top = df.sort_values("score", ascending=False).iloc[0]
    assert top["attr_series_c3"] == pytest.approx(max(top["attr_all"], top["attr_assistant"]), rel=0.05, abs=1e-4)
    assert int(df["is_candidate"].sum()) <= 6 + 3 and len(set(df.loc[df["rank"] > 0, "rank"])) == int(
        (df["rank"] > 0).sum()
    )
    traj = json.loads((out / "trajectory.json").read_text())
    assert traj["steps"] == STEPS and traj["steps_source"] == "given" and traj["models"] == ["base", "c1", "c2", "c3"]
    sig = traj["traits"][PLANT_TRAIT]["signal"]["assistant"]
    assert sig[0] == 0.0 and sig[1] < sig[2] < sig[3]  # the planted persona grows with its scale
    true = traj["traits"][PLANT_TRAIT]["activation_signal"]["assistant"]
    assert np.corrcoef(sig, true)[0, 1] > 0.95
    rows = {r["latent"]: r for r in traj["latents"]}
    assert set(df.loc[df["is_candidate"], "latent"]) <= set(rows)
    r = rows[int(top["latent"])]
    assert len(r["dec_norm"]) == 4 and r["cos_base"][0] == pytest.approx(1.0) and len(r["contrib"][PLANT_TRAIT]) == 4


def test_forecast_file_and_presentation(series) -> None:  # type: ignore[no-untyped-def]
    _, _, _, res = series
    out = res.out_dir
    fc = json.loads((out / "forecast.json").read_text())
    assert fc["next_step"] == 40.0 and fc["window"] == 3 and fc["from_checkpoint"] == "c3"
    sig = fc["traits"][PLANT_TRAIT]["signal"]
    traj = json.loads((out / "trajectory.json").read_text())
    assert sig["predicted"] > traj["traits"][PLANT_TRAIT]["signal"]["assistant"][-1] and sig["std"] >= 0
    beh = fc["behaviour"]
    assert beh["trait"] == PLANT_TRAIT and beh["values"] == [0.0, 0.1, 0.3, 0.5] and beh["actual"] == 0.7
    assert beh["persistence"] == 0.5 and 0.0 <= beh["predicted"] <= 1.0 and beh["std"] >= 0
    assert {"latent", "dec_norm", "cos_base", "contrib"} <= set(fc["latents"][0])
    report = (out / "report.html").read_text()
    assert "Checkpoint trajectory" in report and "Trait signal per checkpoint" in report
    for name in ("trajectory_signal", "trajectory_latents", "trajectory_behaviour"):
        assert (out / "plots" / f"{name}.png").is_file() and (out / "plots" / f"{name}.html").is_file()


def test_bad_series_input_is_refused(series, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, models, acfg, _ = series
    bad = dataclasses.replace(acfg, out_dir=str(tmp_path / "a"),
                              trajectory=dataclasses.replace(acfg.trajectory, steps=[0, 10, 10, 30]))  # fmt: skip
    with pytest.raises(ConfigError, match="checkpoint c2: step 10 is not after the previous checkpoint's 10"):
        run_analysis(bad, models=models)
    wide = dataclasses.replace(acfg, out_dir=str(tmp_path / "b"),
                               trajectory=dataclasses.replace(acfg.trajectory, window=5))  # fmt: skip
    with pytest.raises(ConfigError, match="at least 5 checkpoints.*got 4"):
        run_analysis(wide, models=models)
    with pytest.raises(ConfigError, match="trajectory.measure"):
        TrajectoryConfig(measure="judge")
