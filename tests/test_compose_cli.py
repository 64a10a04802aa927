"""Direction sources (crosscoder decoders, vector files) and the command line (one-line errors, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crosscoder.errors import ConfigError, DataError
from crosscoder.personas.compose.cli import main
from crosscoder.personas.compose.directions import PersonaDirection, Provenance
from crosscoder.personas.compose.sources import decoder_directions, decoder_matrix, from_vector_file
from crosscoder.xc.config import CrosscoderConfig
from crosscoder.xc.model import Crosscoder

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    cc = Crosscoder(CrosscoderConfig(n_models=2, n_hooks=1, d_model=8, n_latents=6, k=2), seed=0)
    with torch.no_grad():
        cc.scale_ML.copy_(torch.tensor([[2.0], [4.0]]))
    cc.save(tmp_path / "run" / "final")
    info = {"model_names": ["base", "ft"], "content_hashes": ["b" * 64, "f" * 64], "hooks": [HOOK]}
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    return tmp_path / "run"


def test_decoders_in_the_raw_basis_and_decoder_change(run_dir: Path) -> None:
    cc = Crosscoder.load(run_dir / "final")
    (ft,) = decoder_directions(run_dir, [3], "ft")
    assert torch.allclose(ft.vector_D, cc.W_dec_FMLD[3, 1, 0] / 4.0) and ft.model_hash == "f" * 64
    (diff,) = decoder_directions(run_dir, [3], "ft", minus="base")
    assert torch.allclose(diff.vector_D, cc.W_dec_FMLD[3, 1, 0] / 4.0 - cc.W_dec_FMLD[3, 0, 0] / 2.0)
    assert (
        diff.model_hash == "b" * 64
        and diff.provenance.kind == "decoder_diff"
        and diff.provenance.models == ("ft", "base")
    )
    assert decoder_matrix(run_dir, "base").shape == (6, 8)
    with pytest.raises(ConfigError, match="out of range"):
        decoder_directions(run_dir, [6], "ft")
    with pytest.raises(ConfigError, match="not in the run"):
        decoder_directions(run_dir, [0], "chat")


def test_vector_file_sources(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.arange(8, dtype=np.float32))
    d = from_vector_file(tmp_path / "v.npy", model_hash="m" * 64, model_name="base", hook=HOOK)
    assert d.provenance.kind == "file" and d.provenance.source_sha256 and d.d_model == 8
    np.save(tmp_path / "m.npy", np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(DataError, match="expected one vector"):
        from_vector_file(tmp_path / "m.npy", model_hash="m" * 64, model_name="base", hook=HOOK)
    (tmp_path / "v.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="pickled"):
        from_vector_file(tmp_path / "v.pt", model_hash="m" * 64, model_name="base", hook=HOOK)


def test_cli_algebra_and_mismatch_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = PersonaDirection("a", torch.tensor([1.0, 0.0, 0.0]), "m" * 64, "base", HOOK, Provenance("file"))
    b = PersonaDirection("b", torch.tensor([1.0, 1.0, 0.0]), "m" * 64, "base", HOOK, Provenance("file"))
    c = PersonaDirection("c", torch.tensor([1.0, 1.0, 0.0]), "x" * 64, "other", HOOK, Provenance("file"))
    for d in (a, b, c):
        d.save(tmp_path / d.name)
    main(
        ["project-out", str(tmp_path / "b.json"), "--against", str(tmp_path / "a.json"), "--out", str(tmp_path / "bo")]
    )
    assert torch.allclose(PersonaDirection.load(tmp_path / "bo.json").vector_D, torch.tensor([0.0, 1.0, 0.0]))
    main(["cosine", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"])
    cos = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cosine"]
    assert cos[0][1] == pytest.approx(2**-0.5, abs=1e-6)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "crosscoder.personas.compose", "add", str(tmp_path / "a.json"), str(tmp_path / "c.json"),
         "--out", str(tmp_path / "ac")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert (
        len(err) == 1 and "'a'" in err[0] and "'c'" in err[0] and "mmmmmmmmmmmm" in err[0] and "xxxxxxxxxxxx" in err[0]
    )
    assert not (tmp_path / "ac.json").exists()
