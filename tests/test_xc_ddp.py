"""torchrun DDP with 2 CPU processes (gloo) takes the same steps as one process on the same global batches: the same
weights to 1e-5 after 50 steps, for TopK (per-token selection) and BatchTopK (selection over the global batch) on
the sparse path and on the dense reference path, and for L1 (sparse path on a sparse support)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crosscoder.xc import Crosscoder, train

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import DATA, setup  # noqa: E402

STEPS = 50


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [
        str(Path(__file__).parent / "ddp_worker.py"),
        str(out),
        str(STEPS),
        "topk",
        "batchtopk",
        "batchtopk-ref",
        "l1",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "batchtopk-ref", "l1"])
def test_ddp_matches_single_process(ddp_run: Path, tmp_path: Path, arch: str) -> None:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cc, trainer, log = setup(arch, STEPS)
        start = {k: v.clone() for k, v in cc.state_dict().items()}
        train(cc, DATA.batches_from, trainer, log, tmp_path)
    finally:
        torch.set_num_threads(n)
    ddp = Crosscoder.load(ddp_run / arch / "final")
    for name, t in cc.state_dict().items():
        moved = float((t - start[name]).abs().max())
        assert name in ("scale_ML", "fold_ML") or moved > 1e-2, (
            name
        )  # 50 steps moved it: the comparison means something
        torch.testing.assert_close(ddp.state_dict()[name], t, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    ranks = [json.loads((ddp_run / arch / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    if arch != "l1":  # the auxiliary loss (a global-batch statistic) took part in the steps
        assert ranks[0]["metrics"]["aux"] > 0
    else:  # every rank took sparse steps (L1 decides by its local support; both paths give the same values)
        assert all(r["sparse_steps"] > 0 for r in ranks), ranks
    assert ranks[0]["metrics"]["fve/m0"] == pytest.approx(ranks[1]["metrics"]["fve/m0"])  # all-reduced metrics
    if arch.startswith("batchtopk"):
        assert ddp.threshold == pytest.approx(float(cc.threshold), rel=1e-5)  # the global batch's smallest kept score
        assert all(r["select_restored"] for r in ranks)  # the global selection is undone after training


def test_ddp_batchtopk_threshold_and_counters_all_reduced(ddp_run: Path) -> None:
    ranks = [json.loads((ddp_run / "batchtopk" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["threshold"] is not None and ranks[0]["threshold"] > 0
    assert ranks[0]["threshold"] == ranks[1]["threshold"]  # each rank selects locally; the threshold is shared
    assert ranks[0]["metrics"]["dead_frac"] == ranks[1]["metrics"]["dead_frac"]
    assert Crosscoder.load(ddp_run / "batchtopk" / "final").threshold == pytest.approx(ranks[0]["threshold"])
    assert not (ddp_run / "batchtopk" / "rank1").exists()
