"""The checkpoint-series part of the presentation: charts, the report section and the W&B line charts.

Reads ``trajectory.json`` and ``forecast.json`` of an analysis folder (written by `crosscoder.analysis.trajectory`;
absent for a pair, and then every function here draws nothing). Charts (`crosscoder.charts`, one stack):

- ``trajectory_signal``: every trait's signal (the persona-vector projection of the reconstructed mean shift from the
  base, assistant tokens) against the training step;
- ``trajectory_latents``: the top candidates' contribution to their trait's signal at every checkpoint;
- ``trajectory_behaviour``: the series' measured behaviour and the forecast of the next checkpoint (when known).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from crosscoder import charts
from crosscoder.io import read_json

TRAJECTORY_PLOTS = ("trajectory_signal", "trajectory_latents", "trajectory_behaviour")
_TOP = 8


def load_series(folder: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(trajectory.json, forecast.json) of an analysis folder, None where absent."""
    t, f = folder / "trajectory.json", folder / "forecast.json"
    return (read_json(t) if t.is_file() else None), (read_json(f) if f.is_file() else None)


def _pts(steps: list[float], ys: list[float | None], fmt: str) -> tuple[list[float], list[float], list[str]]:
    keep = [(x, y) for x, y in zip(steps, ys, strict=True) if y is not None]
    return [x for x, _ in keep], [float(y) for _, y in keep], [fmt.format(x=x, y=y) for x, y in keep]


def _signal_chart(traj: dict[str, Any]) -> charts.Chart | None:
    steps, slc = traj["steps"], traj.get("signal_slice", "assistant")
    series = {t: _pts(steps, v["signal"][slc], f"{t} step {{x:g}}: {{y:.3g}}") for t, v in traj["traits"].items()}
    return charts.lines(series, "Trait signal per checkpoint (persona-vector projection of the mean shift)",
                        "training step", f"signal ({slc} tokens)")  # fmt: skip


def _latent_chart(traj: dict[str, Any]) -> charts.Chart | None:
    steps = traj["steps"]
    ranked = sorted((r for r in traj["latents"] if r.get("rank")), key=lambda r: r["rank"])[:_TOP]
    series = {}
    for r in ranked:
        trait = (
            r.get("label")
            if r.get("label") in r["contrib"]
            else max(r["contrib"], key=lambda t: abs(r["contrib"][t][-1] or 0))
        )
        name = f"#{r['latent']} {trait}"
        series[name] = _pts(steps, r["contrib"][trait], f"{name} step {{x:g}}: {{y:.3g}}")
    return charts.lines(series, "Top candidates: contribution to their trait's signal", "training step", "contribution")


def _behaviour_chart(traj: dict[str, Any], fc: dict[str, Any] | None) -> charts.Chart | None:
    beh = (fc or {}).get("behaviour")
    if not beh:
        return None
    steps = traj["steps"]
    series = {f"{beh['trait']} ({beh['measure']})": _pts(steps, beh["values"], "step {x:g}: {y:.3g}")}
    tip = f"forecast step {fc['next_step']:g}: {beh['predicted']:.3g} ± {beh['std']:.2g}"  # type: ignore[index]
    series["forecast"] = ([fc["next_step"]], [beh["predicted"]], [tip])  # type: ignore[index]
    if beh.get("actual") is not None:
        series["actual"] = ([fc["next_step"]], [beh["actual"]], [f"actual: {beh['actual']:.3g}"])  # type: ignore[index]
    return charts.lines(series, "Behaviour per checkpoint and the next checkpoint's forecast", "training step",
                        beh["measure"])  # fmt: skip


def trajectory_charts(folder: Path) -> dict[str, charts.Chart | None]:
    """The series charts of an analysis folder, keyed by `TRAJECTORY_PLOTS` (empty for a pair)."""
    traj, fc = load_series(folder)
    if traj is None:
        return {}
    return {"trajectory_signal": _signal_chart(traj), "trajectory_latents": _latent_chart(traj),
            "trajectory_behaviour": _behaviour_chart(traj, fc)}  # fmt: skip


def _forecast_table(fc: dict[str, Any]) -> str:
    beh = fc.get("behaviour")
    rows = []
    if beh:
        actual = "–" if beh.get("actual") is None else f"{beh['actual']:.3f}"
        rows.append(f"<tr><td>behaviour: {escape(beh['trait'])} ({escape(beh['measure'])})</td>"
                    f"<td>{beh['predicted']:.3f} ± {beh['std']:.3f}</td><td>{actual}</td>"
                    f"<td>persistence {beh['persistence']:.3f}, behaviour-only linear {beh['behaviour_linear']:.3f}</td></tr>")  # fmt: skip
    for t, v in fc.get("traits", {}).items():
        s = v["signal"]
        rows.append(
            f"<tr><td>signal: {escape(t)}</td><td>{s['predicted']:.3g} ± {s['std']:.2g}</td><td>–</td><td></td></tr>"
        )
    head = "<tr><th>quantity</th><th>forecast</th><th>actual</th><th>baselines</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def trajectory_section(folder: Path) -> str:
    """The report's "Checkpoint trajectory" section ("" for a pair)."""
    traj, fc = load_series(folder)
    if traj is None:
        return ""
    panels = "".join(f'<div class="panel">{charts.inline(c, n.replace("_", " "), "nothing to plot")}</div>'
                     for n, c in trajectory_charts(folder).items())  # fmt: skip
    steps = ", ".join(f"{m} {s:g}" for m, s in zip(traj["models"], traj["steps"], strict=True))
    note = (f'<p class="note">Checkpoints (step): {escape(steps)} ({escape(traj["steps_source"])}). The signal of a '
            "trait is the projection of the crosscoder's reconstructed mean shift from the base on the base model's "
            "persona vector; forecast.json extrapolates it, each top latent and (with a behaviour record) the "
            f"behaviour to step {fc['next_step']:g} over the last {fc['window']} checkpoints.</p>" if fc else "")  # fmt: skip
    table = _forecast_table(fc) if fc else ""
    return f'<h2 id="trajectory">Checkpoint trajectory</h2>{note}<div class="grid2">{panels}</div>{table}'


def wandb_trajectory(folder: Path) -> dict[str, Any]:
    """W&B payload entries: one line chart per top latent (decoder norm by step) and the trait signals."""
    import wandb

    traj, _ = load_series(folder)
    if traj is None:
        return {}
    out: dict[str, Any] = {}
    steps = traj["steps"]
    for r in sorted((r for r in traj["latents"] if r.get("rank")), key=lambda r: r["rank"])[:_TOP]:
        rows = [[s, n, c, f] for s, n, c, f in zip(steps, r["dec_norm"], r["cos_base"], r["freq_on"], strict=True)]
        table = wandb.Table(data=rows, columns=["step", "dec_norm", "cos_base", "freq_on"])
        out[f"trajectory/latent_{r['latent']}"] = wandb.plot.line(
            table, "step", "dec_norm", title=f"latent {r['latent']} ({r.get('label') or 'unlabelled'}): decoder norm"
        )
    keys = list(traj["traits"])
    ys = [traj["traits"][t]["signal"][traj.get("signal_slice", "assistant")] for t in keys]
    out["trajectory/signal"] = wandb.plot.line_series(xs=steps, ys=ys, keys=keys, title="trait signal", xname="step")
    return out
