"""Hand-drawn inline SVG charts for the HTML report (no JavaScript, no external assets; hover text via <title>).

Each function returns one `<svg>` string. Coordinates: a plot area inset by fixed margins; data -> pixel through
linear (or log10 for counts) scales with "nice" tick steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 56, 16, 46, 44
_AXIS = "#495057"
_GRID = "#e9ecef"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about n of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}"
    return f"{v:g}"


class _Frame:
    """Pixel geometry and the axes of one chart."""

    def __init__(self, width: int, height: int, x_lim: tuple[float, float], y_lim: tuple[float, float], log_y: bool):
        self.w, self.h, self.log_y = width, height, log_y
        self.x0, self.x1 = x_lim
        self.y0, self.y1 = y_lim
        self.pw = width - _M_LEFT - _M_RIGHT
        self.ph = height - _M_TOP - _M_BOTTOM

    def px(self, x: float) -> float:
        return _M_LEFT + (x - self.x0) / (self.x1 - self.x0 or 1.0) * self.pw

    def py(self, y: float) -> float:
        if self.log_y:
            y = math.log10(max(y, 10**self.y0)) if y > 0 else self.y0
        return _M_TOP + self.ph - (y - self.y0) / (self.y1 - self.y0 or 1.0) * self.ph

    def axes(self, title: str, xlabel: str, ylabel: str) -> list[str]:
        parts = [f'<text x="{_M_LEFT}" y="18" class="svg-title">{escape(title)}</text>']
        for t in nice_ticks(self.x0, self.x1, 6):
            x = self.px(t)
            parts.append(f'<line x1="{x:.1f}" y1="{_M_TOP}" x2="{x:.1f}" y2="{_M_TOP + self.ph}" stroke="{_GRID}"/>')
            parts.append(
                f'<text x="{x:.1f}" y="{_M_TOP + self.ph + 15}" text-anchor="middle" class="svg-tick">{_fmt(t)}</text>'
            )
        if self.log_y:
            yticks = [float(e) for e in range(math.floor(self.y0), math.ceil(self.y1) + 1)]
            ylab = [_fmt(10**e) for e in yticks]
            ypix = [_M_TOP + self.ph - (e - self.y0) / (self.y1 - self.y0 or 1.0) * self.ph for e in yticks]
        else:
            yticks = nice_ticks(self.y0, self.y1, 5)
            ylab = [_fmt(t) for t in yticks]
            ypix = [self.py(t) for t in yticks]
        for y, lab in zip(ypix, ylab, strict=True):
            if _M_TOP - 1 <= y <= _M_TOP + self.ph + 1:
                parts.append(
                    f'<line x1="{_M_LEFT}" y1="{y:.1f}" x2="{_M_LEFT + self.pw}" y2="{y:.1f}" stroke="{_GRID}"/>'
                )
                parts.append(f'<text x="{_M_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="svg-tick">{lab}</text>')
        base = _M_TOP + self.ph
        parts.append(f'<line x1="{_M_LEFT}" y1="{base}" x2="{_M_LEFT + self.pw}" y2="{base}" stroke="{_AXIS}"/>')
        parts.append(f'<line x1="{_M_LEFT}" y1="{_M_TOP}" x2="{_M_LEFT}" y2="{base}" stroke="{_AXIS}"/>')
        parts.append(
            f'<text x="{_M_LEFT + self.pw / 2:.1f}" y="{self.h - 8}" text-anchor="middle" class="svg-label">{escape(xlabel)}</text>'
        )
        parts.append(
            f'<text transform="translate(14,{_M_TOP + self.ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
            f'class="svg-label">{escape(ylabel)}</text>'
        )
        return parts

    def wrap(self, parts: list[str], label: str) -> str:
        body = "".join(parts)
        return (
            f'<svg class="chart" viewBox="0 0 {self.w} {self.h}" width="{self.w}" height="{self.h}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
        )


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    """One horizontal row of colour keys starting at (x, y)."""
    parts = []
    for name, color in items:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}" rx="2"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" class="svg-tick">{escape(name.replace("_", " "))}</text>')
        x += 24 + 6.2 * len(name)
    return parts


def stacked_histogram(
    groups: dict[str, np.ndarray],
    colors: dict[str, str],
    bins: int,
    value_range: tuple[float, float],
    title: str,
    xlabel: str,
    vlines: Sequence[tuple[float, str]] = (),
    log_y: bool = True,
    width: int = 620,
    height: int = 300,
) -> str:
    """Histogram of several groups stacked per bin (e.g. latents by class); vertical reference lines optional."""
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    counts = {g: np.histogram(v[np.isfinite(v)], bins=edges)[0] for g, v in groups.items()}
    total = sum(counts.values(), np.zeros(bins, dtype=np.int64))
    top = float(total.max()) if total.size else 1.0
    y_lim = (0.0, math.log10(max(top, 1.0)) * 1.05 + 0.05) if log_y else (0.0, max(top, 1.0) * 1.05)
    fr = _Frame(width, height, value_range, y_lim, log_y)
    parts = fr.axes(title, xlabel, "latents (log)" if log_y else "latents")
    for i in range(bins):
        lo_val = 0.0
        for g, c in counts.items():
            if c[i] == 0:
                continue
            hi_val = lo_val + float(c[i])
            # log scale: stack in linear counts, draw between log positions (a count of 1 sits at 10^0).
            y_top = fr.py(hi_val)
            y_bot = fr.py(lo_val) if lo_val > 0 else _M_TOP + fr.ph
            x_a, x_b = fr.px(edges[i]), fr.px(edges[i + 1])
            tip = f"{g}: {int(c[i])} latents in [{edges[i]:.3g}, {edges[i + 1]:.3g})"
            parts.append(
                f'<rect x="{x_a + 0.5:.1f}" y="{y_top:.1f}" width="{max(x_b - x_a - 1, 0.5):.1f}" '
                f'height="{max(y_bot - y_top, 0.5):.1f}" fill="{colors.get(g, "#868e96")}"><title>{escape(tip)}</title></rect>'
            )
            lo_val = hi_val
    for x, name in vlines:
        xp = fr.px(x)
        parts.append(f'<line x1="{xp:.1f}" y1="{_M_TOP}" x2="{xp:.1f}" y2="{_M_TOP + fr.ph}" class="svg-ref"/>')
        parts.append(f'<text x="{xp + 3:.1f}" y="{_M_TOP + 10}" class="svg-ref-text">{escape(name)}</text>')
    present = [(g, colors.get(g, "#868e96")) for g, c in counts.items() if c.sum() > 0]
    parts += _legend(present, _M_LEFT, 36)
    return fr.wrap(parts, title)


def scatter(
    x: np.ndarray,
    y: np.ndarray,
    tips: Sequence[str],
    highlight: np.ndarray,
    labels: Sequence[str],
    title: str,
    xlabel: str,
    ylabel: str,
    box: tuple[float, float] | None = None,
    width: int = 620,
    height: int = 360,
) -> str:
    """Scatter of finite (x, y); highlighted points drawn on top with a text label; optional "good" box [0,bx]x[0,by]."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return f'<p class="muted">{escape(title)}: no finite values to plot.</p>'
    xs, ys = x[ok], y[ok]
    # axis range: the bulk of the data (0.5-99.5th percentile, always covering [0, 1] and every highlighted
    # point); points beyond it are pinned to the edge and drawn hollow
    keep = highlight[ok].astype(bool)
    lo_x = min(0.0, float(np.percentile(xs, 0.5)), float(xs[keep].min()) if keep.any() else 0.0)
    hi_x = max(1.0, float(np.percentile(xs, 99.5)), float(xs[keep].max()) if keep.any() else 1.0)
    lo_y = min(0.0, float(np.percentile(ys, 0.5)), float(ys[keep].min()) if keep.any() else 0.0)
    hi_y = max(1.0, float(np.percentile(ys, 99.5)), float(ys[keep].max()) if keep.any() else 1.0)
    pad_x, pad_y = 0.04 * (hi_x - lo_x), 0.04 * (hi_y - lo_y)
    fr = _Frame(width, height, (lo_x - pad_x, hi_x + pad_x), (lo_y - pad_y, hi_y + pad_y), log_y=False)
    parts = fr.axes(title, xlabel, ylabel)
    if box is not None:
        bx, by = fr.px(min(box[0], fr.x1)), fr.py(min(box[1], fr.y1))
        x_zero, y_zero = fr.px(max(0.0, fr.x0)), fr.py(max(0.0, fr.y0))
        parts.append(
            f'<rect x="{x_zero:.1f}" y="{by:.1f}" width="{bx - x_zero:.1f}" height="{y_zero - by:.1f}" '
            f'fill="#d3f9d8" opacity="0.6"><title>passes the Latent Scaling test</title></rect>'
        )
    idx = np.flatnonzero(ok)
    order = sorted((int(i) for i in idx), key=lambda i: bool(highlight[i]))  # highlighted last = on top
    for i in order:
        xv, yv = min(max(float(x[i]), lo_x), hi_x), min(max(float(y[i]), lo_y), hi_y)
        cx, cy = fr.px(xv), fr.py(yv)
        tip = escape(tips[i])
        if highlight[i]:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" class="pt-hi"><title>{tip}</title></circle>')
            if labels[i]:
                parts.append(f'<text x="{cx + 7:.1f}" y="{cy - 5:.1f}" class="svg-pt-label">{escape(labels[i])}</text>')
        else:
            cls = "pt" if (xv, yv) == (float(x[i]), float(y[i])) else "pt-out"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.6" class="{cls}"><title>{tip}</title></circle>')
    parts += _legend([("candidate", "#d9480f"), ("other latent", "#adb5bd")], _M_LEFT, 36)
    return fr.wrap(parts, title)


def hbars(
    names: Sequence[str], values: Sequence[float], colors: Sequence[str], title: str, xlabel: str, width: int = 620
) -> str:
    """Horizontal bar chart, one bar per name (top to bottom in the given order)."""
    if not names:
        return f'<p class="muted">{escape(title)}: nothing to plot.</p>'
    row = 20
    height = _M_TOP + _M_BOTTOM + row * len(names)
    vals = [v if math.isfinite(v) else 0.0 for v in values]
    hi = max(max(vals), 1e-12)
    fr = _Frame(width, height, (0.0, hi * 1.08), (0.0, 1.0), log_y=False)
    fr_left = 130
    scale = (width - fr_left - _M_RIGHT) / (hi * 1.08)
    parts = [f'<text x="{fr_left}" y="18" class="svg-title">{escape(title)}</text>']
    for t in nice_ticks(0.0, hi * 1.08, 5):
        xp = fr_left + t * scale
        parts.append(f'<line x1="{xp:.1f}" y1="{_M_TOP}" x2="{xp:.1f}" y2="{height - _M_BOTTOM}" stroke="{_GRID}"/>')
        parts.append(
            f'<text x="{xp:.1f}" y="{height - _M_BOTTOM + 15}" text-anchor="middle" class="svg-tick">{_fmt(t)}</text>'
        )
    for i, (name, v, c) in enumerate(zip(names, vals, colors, strict=False)):
        y = _M_TOP + i * row
        parts.append(f'<text x="{fr_left - 6}" y="{y + 14}" text-anchor="end" class="svg-tick">{escape(name)}</text>')
        parts.append(
            f'<rect x="{fr_left}" y="{y + 3}" width="{max(v * scale, 0.5):.1f}" height="{row - 6}" fill="{c}" rx="2">'
            f"<title>{escape(name)}: {v:.4g}</title></rect>"
        )
    parts.append(
        f'<text x="{fr_left + (width - fr_left) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="svg-label">{escape(xlabel)}</text>'
    )
    return fr.wrap(parts, title).replace(f'height="{fr.h}"', f'height="{height}"', 1)


def line(
    xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str, width: int = 300, height: int = 190
) -> str:
    """A small line chart with markers (e.g. trait score against steering strength)."""
    pts = [
        (float(a), float(b))
        for a, b in zip(xs, ys, strict=False)
        if math.isfinite(float(a)) and math.isfinite(float(b))
    ]
    if not pts:
        return f'<p class="muted">{escape(title)}: no values.</p>'
    xv, yv = [p[0] for p in pts], [p[1] for p in pts]
    x_lo, x_hi = min(xv), max(xv) if max(xv) > min(xv) else min(xv) + 1
    y_lo, y_hi = min(min(yv), 0.0), max(yv) * 1.1 if max(yv) > 0 else 1.0
    fr = _Frame(width, height, (x_lo, x_hi), (y_lo, y_hi), log_y=False)
    parts = fr.axes(title, xlabel, ylabel)
    path = " ".join(f"{'M' if i == 0 else 'L'}{fr.px(a):.1f},{fr.py(b):.1f}" for i, (a, b) in enumerate(pts))
    parts.append(f'<path d="{path}" fill="none" stroke="#d9480f" stroke-width="2"/>')
    for a, b in pts:
        parts.append(
            f'<circle cx="{fr.px(a):.1f}" cy="{fr.py(b):.1f}" r="3.5" fill="#d9480f"><title>{a:g}: {b:.3g}</title></circle>'
        )
    return fr.wrap(parts, title)
