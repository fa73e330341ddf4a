"""The HTML report as a person sees it: rendered by a real headless Chromium.

The page is drawn into a screenshot and the picture is read back: every line, shade
and legend swatch a reader needs is there in its colour, and the backup's rate line is
drawn across the chart, not flattened on its floor by one fast first chunk.
``WEDGUARD_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns a missing browser into a
failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from test_report import T0, make_report
from wedguard.report import html_report

REQUIRE = os.environ.get("WEDGUARD_REQUIRE_BROWSER") == "1"


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no headless Chromium (Debian: apt-get install chromium)"
    if REQUIRE:
        pytest.fail(f"{reason} (WEDGUARD_REQUIRE_BROWSER=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)
    raise AssertionError  # pragma: no cover - skip raises


def _screenshot(page: str, tmp_path: Path) -> Any:
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            _browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,1500",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return (matplotlib.image.imread(shot)[:, :, :3] * 255).round().astype(int)


def _has(image: Any, rgb: tuple[int, int, int], *, tol: int = 12, at_least: int = 40) -> bool:
    close = (np.abs(image - np.array(rgb)).max(axis=2) <= tol).sum()
    return bool(close >= at_least)


def _hex(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _over_white(color: str, alpha: float) -> tuple[int, int, int]:
    r, g, b = _hex(color)
    return (
        round(255 + (r - 255) * alpha),
        round(255 + (g - 255) * alpha),
        round(255 + (b - 255) * alpha),
    )


def test_the_rendered_report_shows_every_line_shade_and_key(tmp_path: Path) -> None:
    """Backup rate, allowed rate, latency, baseline, limit, PEAK and BLACKOUT shading and
    the event lines are all visible in the browser's picture."""
    latency = [(T0 + timedelta(seconds=t), 0.1 + (0.02 if 1200 <= t < 2400 else 0)) for t in
               range(0, 3600, 20)]  # fmt: skip
    image = _screenshot(html_report(make_report(), latency=latency, baseline=0.1), tmp_path)
    for name, color in {
        "backup rate": "#4a90e2",
        "allowed rate": "#2c3e50",
        "latency": "#d35400",
        "baseline": "#27ae60",
        "limit": "#c0392b",
    }.items():
        assert _has(image, _hex(color), tol=30), name
    assert _has(image, _over_white("#f5a623", 0.18), tol=6, at_least=2000), "PEAK shading"
    assert _has(image, _over_white("#7f7f7f", 0.3), tol=6, at_least=500), "BLACKOUT shading"


def test_the_rate_line_is_not_flattened_by_a_fast_first_chunk(tmp_path: Path) -> None:
    """A first chunk of 1 MiB in 14 ms (73 MB/s) under a 1 MB/s limit: the rate line
    still spans most of the chart's height (its axis follows the sustained rate)."""
    timeline = [{"t": 0.0, "bytes": 0, "rate": 1e6, "level": "OPEN", "verdict": "OK"}]
    timeline.append({"t": 0.014, "bytes": 2**20, "rate": 1e6, "level": "OPEN", "verdict": "OK"})
    timeline += [
        {"t": 1.0 * i, "bytes": 2**20 * i, "rate": 1e6, "level": "OPEN", "verdict": "OK"}
        for i in range(2, 61)
    ]
    report = {"name": "slow", "started_at": T0.isoformat(), "duration_s": 60.0,
              "bytes": 60 * 2**20, "timeline": timeline}  # fmt: skip
    image = _screenshot(html_report(report), tmp_path)
    blue = np.abs(image - np.array(_hex("#4a90e2"))).max(axis=2) <= 30
    rows = np.nonzero(blue.any(axis=1))[0]
    assert rows.size, "no backup rate line drawn"
    grey = np.abs(image - np.array((153, 153, 153))).max(axis=2) <= 2  # the plot frame
    frame_rows = np.nonzero(grey.sum(axis=1) > 400)[0]
    top, bottom = frame_rows[0], frame_rows[1]  # the first chart's frame
    height = bottom - top
    line_row = np.median(rows[(rows > top) & (rows < bottom)])
    assert (bottom - line_row) / height > 0.6  # near the top of the chart, not on its floor
