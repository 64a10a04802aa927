"""`python -m crosscoder.bench export RUN_DIR`: how well each SAELens export mode reconstructs each model.

For a finished run, every (model, hook) slice is exported in each encoder mode (`fit`, `mirror`, `own`;
crosscoder.analysis.export.saelens), loaded back with `sae_lens.SAE.load_from_disk`, and run on that model's own
activations alone. The `fit` mode is fitted on the even sequences of the run's activation cache; every FVE is measured
on the odd ones (training rows only, the first position excluded as in training), against the crosscoder's own FVE on
the same rows with both models' activations. Writes a JSON file (`--out`) and prints a table.

FVE_m = 1 − Σ‖x_m − x̂_m‖² / Σ‖x_m − mean(x_m)‖² (docs/EXPORT.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from crosscoder.analysis.export.saelens import ENCODER_MODES, export_saelens
from crosscoder.data.api import ActivationSet, RowBatch
from crosscoder.errors import DataError
from crosscoder.io import atomic_write_json, read_json


@dataclass
class _Sums:
    sse: float = 0.0
    sum_sq: float = 0.0
    n: int = 0
    total: torch.Tensor | None = None

    def add(self, x_BD: torch.Tensor, xhat_BD: torch.Tensor) -> None:
        x = x_BD.double()
        self.sse += float(((x - xhat_BD.double()) ** 2).sum())
        self.sum_sq += float((x**2).sum())
        self.total = x.sum(0) if self.total is None else self.total + x.sum(0)
        self.n += x.shape[0]

    def fve(self) -> float:
        assert self.total is not None and self.n > 0
        var = self.sum_sq - float((self.total**2).sum()) / self.n
        return 1.0 - self.sse / var


@dataclass
class ExportFVE:
    """What `run` measured."""

    run_dir: str
    architecture: str
    n_latents: int
    models: list[str]
    hooks: list[str]
    n_eval_rows: int
    crosscoder_fve: dict[str, float]
    """FVE per `<model>/<hook>` of the crosscoder fed every model's activation (the target)."""
    export_fve: dict[str, dict[str, float]] = field(default_factory=dict)
    """mode -> `<model>/<hook>` -> FVE of the exported SAE fed this model's activation alone."""
    ratio: dict[str, dict[str, float]] = field(default_factory=dict)
    """mode -> `<model>/<hook>` -> export FVE / crosscoder FVE."""
    seconds: float = 0.0


def _even(rb: RowBatch) -> torch.Tensor:
    return rb.train_mask_B & (rb.seq_B % 2 == 0)


def _odd(rb: RowBatch) -> torch.Tensor:
    return rb.train_mask_B & (rb.seq_B % 2 == 1)


def run(run_dir: Path, modes: list[str], batch: int = 2048) -> ExportFVE:
    """Export in every mode and measure FVE on the held-out (odd) sequences."""
    from sae_lens import SAE

    from crosscoder.xc.model import Crosscoder

    t0 = time.perf_counter()
    info = read_json(run_dir / "run.json")
    if not info.get("activations") or not Path(info["activations"]).is_dir():
        raise DataError(f"{run_dir}/run.json names no activation cache on this machine; run the training here first")
    acts = ActivationSet.open(info["activations"], verify=False)
    cc = Crosscoder.load(run_dir / "final").float().eval()
    names, hooks = list(info["model_names"]), list(info["hooks"])
    keys = [f"{n}/{h}" for n in names for h in hooks]
    saes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            folders = export_saelens(run_dir, Path(tmp) / mode, encoder=mode, activations=acts, fit_rows=_even)
            saes[mode] = [SAE.load_from_disk(str(f), device="cpu") for f in folders]
    sums = {mode: [_Sums() for _ in keys] for mode in ["crosscoder", *modes]}
    L = len(hooks)
    with torch.no_grad():
        for rb in acts.iter_rows(batch):
            mask = _odd(rb)
            if not bool(mask.any()):
                continue
            x_BMLD = rb.x_BMLD[mask]
            xhat_BMLD = cc.decode(cc.encode(x_BMLD))
            for i in range(len(keys)):
                m, h = divmod(i, L)
                sums["crosscoder"][i].add(x_BMLD[:, m, h], xhat_BMLD[:, m, h])
                for mode in modes:
                    sae = saes[mode][i]
                    sums[mode][i].add(x_BMLD[:, m, h], sae.decode(sae.encode(x_BMLD[:, m, h])))
    target = {k: s.fve() for k, s in zip(keys, sums["crosscoder"], strict=True)}
    out = ExportFVE(str(run_dir), cc.cfg.architecture, int(cc.cfg.n_latents), names, hooks,
                    sums["crosscoder"][0].n, target)  # fmt: skip
    for mode in modes:
        out.export_fve[mode] = {k: s.fve() for k, s in zip(keys, sums[mode], strict=True)}
        out.ratio[mode] = {k: out.export_fve[mode][k] / target[k] for k in keys}
    out.seconds = round(time.perf_counter() - t0, 1)
    return out


def table(res: ExportFVE) -> str:
    keys = list(res.crosscoder_fve)
    lines = [f"{'':<12}" + "".join(f"{k[:28]:>30}" for k in keys)]
    lines.append(f"{'crosscoder':<12}" + "".join(f"{res.crosscoder_fve[k]:>30.3f}" for k in keys))
    for mode, fves in res.export_fve.items():
        lines.append(f"{mode:<12}" + "".join(f"{fves[k]:>21.3f} ({res.ratio[mode][k]:5.1%})" for k in keys))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> ExportFVE:
    p = argparse.ArgumentParser(prog="python -m crosscoder.bench export", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a finished training run folder (final/ and run.json)")
    p.add_argument("--modes", default=",".join(ENCODER_MODES), help="comma list of fit, mirror, own")
    p.add_argument("--out", type=Path, default=Path("results/export_fve.json"))
    a = p.parse_args(argv)
    res = run(a.run_dir, [m.strip() for m in a.modes.split(",") if m.strip()])
    atomic_write_json(a.out, asdict(res))
    print(table(res))
    print(f"results: {a.out} ({res.n_eval_rows} held-out rows, {res.seconds:.0f} s)")
    return res
