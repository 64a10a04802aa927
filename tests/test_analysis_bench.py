"""The analysis benchmark's fake run: its planted latents are ft-exclusive, pass Latent Scaling and fill the candidates."""

from __future__ import annotations

from pathlib import Path

from crosscoder.analysis.rank.table import build_table
from crosscoder.analysis.stats.collect import collect_stats
from crosscoder.analysis.stats.geometry import decoder_geometry
from crosscoder.analysis.stats.scaling import latent_scaling
from crosscoder.bench.analysis import build_fake_run
from crosscoder.testing.synthetic import synthetic_acts
from crosscoder.xc.model import Crosscoder


def _table(tmp_path: Path, n_planted: int):
    acts, v_D = synthetic_acts(32, 32, 64, n_feats=32, density=0.05)
    run = build_fake_run(tmp_path / str(n_planted), 512, 64, 16, planted_D=v_D, n_planted=n_planted)
    cc = Crosscoder.load(run / "final")
    st = collect_stats(cc, acts, max_rows=0, batch_size=256, first_assistant_tokens=4, top_k=8, fast=True)
    geo = decoder_geometry(cc, ["base", "ft"], 0.9, 0.9)
    sc = latent_scaling(geo, st, 0.5, 0.5)
    return build_table(geo, st, sc, dead_max_freq=1e-6, exclusivity_weight=1.0, n_candidates=50)


def test_planted_latents_are_the_candidates(tmp_path: Path) -> None:
    df = _table(tmp_path, 8)
    planted = df.iloc[:8]
    assert (planted["class"] == "ft_exclusive").all()
    assert planted["is_candidate"].all()
    assert set(df.index[df["rank"].between(1, 8)]) == set(range(8))  # they outrank every random latent


def test_without_planted_latents_nothing_is_ft_exclusive(tmp_path: Path) -> None:
    df = _table(tmp_path, 0)
    assert not (df["class"] == "ft_exclusive").any()
