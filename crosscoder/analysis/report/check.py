"""Render an analysis folder's HTML report in headless Chromium and save a screenshot (`make check-report`).

The command line is ``python -m crosscoder.analysis check-report [analysis_dir] [--out PNG] [--sample]``
(`crosscoder.analysis.cli`). The report is rewritten from the folder's files, rendered with Debian's `chromium`
(install with `apt-get install -y chromium`), and the screenshot is checked to be non-blank. The browser runs offline-friendly: no network features, a throwaway profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crosscoder.errors import CrosscoderError, DataError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
"""Executable names tried in order (after $CHROMIUM)."""
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian/Ubuntu) or set CHROMIUM=/path/to/chrome"


class BrowserError(CrosscoderError):
    """Headless Chromium is missing or failed to render."""


@dataclass
class ScreenshotCheck:
    """What the screenshot looked like."""

    path: Path
    """The PNG written."""
    width: int
    """Pixels."""
    height: int
    """Pixels."""
    non_white: float
    """Fraction of pixels that are not (near) white."""
    n_colors: int
    """Distinct colours (quantised to 4 bits per channel)."""

    @property
    def blank(self) -> bool:
        """A page that did not render (all white or one flat colour)."""
        return self.non_white < 0.01 or self.n_colors < 8


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() or shutil.which(env) else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html: Path, png: Path, window: tuple[int, int] = (1400, 2400), timeout: float = 120.0) -> Path:
    """Render `html` (a local file) in headless Chromium and write a `window`-sized screenshot to `png`."""
    exe = find_chromium()
    if exe is None:
        raise BrowserError(f"no Chromium found to render {html.name}; {INSTALL_HINT}")
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise DataError(
            f"report {html} does not exist; write it first with crosscoder.analysis.report.page.write_report"
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory(prefix="cc-chromium-") as profile:
        cmd = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--screenshot={png}", f"--window-size={window[0]},{window[1]}", html.as_uri(),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise BrowserError(
                f"{exe} did not finish rendering {html.name} in {timeout:.0f} s; check the browser runs"
            ) from err
    if not png.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BrowserError(f"{exe} exited {proc.returncode} without a screenshot ({tail[0][:200]}); {INSTALL_HINT}")
    return png


def inspect_png(png: Path) -> ScreenshotCheck:
    """Measure how much of a screenshot is content (non-white pixels, distinct colours)."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    non_white = float((rgb.min(axis=2) < 245).mean())
    q = (rgb >> 4).reshape(-1, 3).astype(np.int32)
    n_colors = int(np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]).size)
    return ScreenshotCheck(path=png, width=rgb.shape[1], height=rgb.shape[0], non_white=non_white, n_colors=n_colors)


def check_report(
    analysis_dir: Path, out: Path | None = None, window: tuple[int, int] = (1400, 2400)
) -> ScreenshotCheck:
    """(Re)write `analysis_dir/report.html`, screenshot it, and refuse a blank render."""
    from crosscoder.analysis.report.page import write_report

    report = write_report(analysis_dir)
    png = screenshot(report, out or analysis_dir / "report.png", window=window)
    result = inspect_png(png)
    if result.blank:
        raise BrowserError(
            f"the screenshot {png} is blank ({result.non_white:.1%} non-white, {result.n_colors} colours); "
            "open report.html in a browser to see what failed"
        )
    return result
