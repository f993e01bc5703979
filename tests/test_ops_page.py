"""The usage page at `/` of a real HTTP server (the real model, driven by the official MCP client) and the same page
from `mcp-latent report`, opened in a real headless Chromium (Debian's package; .ci/run installs it): the DOM holds
the profiles and the figures `latent://stats` reports, the screenshot shows the plot's colours, and the page loads
nothing from the network.

Set OPS_SCREENSHOT_DIR to keep the screenshots (docs/img/ is filled that way: `tools/ops_screenshot.sh`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx2
import numpy as np
import pytest
from conftest import server_env
from test_e2e_stdio import RISKY, SAFE, server_command
from test_shared_state import free_port, http_client, start_http

from mcp_latent.ops.plots import ANSWERED, ESCALATED
from mcp_latent.service import usage_db

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# A day of history, as a deployment that learns would leave it: the share escalated falls as teaches come in.
HISTORY_HOURS = 24
START_SHARE = {"risk": 0.6, "roi": 0.5, "category": 0.7}
END_SHARE = {"risk": 0.08, "roi": 0.15, "category": 0.25}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return found


def browse(url: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={profile_dir}", "--window-size=1280,1900", *args, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def seed_history(data_dir: Path) -> None:
    """Counts per hour over the last day, through the stats database's own write path."""
    now = int(time.time() // 60)
    tallies = {}
    for hour in range(HISTORY_HOURS):
        minute = now - (HISTORY_HOURS - hour) * 60
        for profile, start in START_SHARE.items():
            share = start + (END_SHARE[profile] - start) * hour / (HISTORY_HOURS - 1)
            verdicts = 40 + 3 * hour
            escalated = round(verdicts * share)
            tallies[(profile, minute)] = {
                "answered": verdicts - escalated, "escalated": escalated, "taught": escalated // 2,
                "agreed": 3, "disagreed": hour % 2,
            }  # fmt: skip
    usage_db.write(data_dir / "stats.sqlite", tallies, {})


def colour_pixels(png: Path, colour: str, tolerance: int = 12) -> int:
    import matplotlib.image

    pixels = (matplotlib.image.imread(png)[..., :3] * 255).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - target).max(axis=-1) <= tolerance).sum())


def assert_page(dom: str, png: Path, stats: dict) -> None:
    for profile, figures in stats.items():
        # the per-profile row: name, answered, escalated as `latent://stats` counts them
        row = f'<td>{profile}</td><td class="n">{figures["answered"]:,}</td><td class="n">{figures["escalated"]:,}</td>'
        assert row in dom, (profile, figures)
    answered = sum(f["answered"] for f in stats.values())
    assert f"<b>{answered * 700:,}</b>LLM tokens saved (est.)" in dom
    assert dom.count("<svg") >= 1 + len(stats)  # the share plot and one per profile, inline
    assert not re.search(r"<(script|link|img|iframe)\b", dom)
    assert not re.search(r"(src|href)=\"?https?:", dom)  # nothing fetched from anywhere
    pixels = non_background_pixels(png)
    assert pixels > 100_000  # a rendered page, not a blank one
    assert colour_pixels(png, ANSWERED) > 2_000 and colour_pixels(png, ESCALATED) > 1_000


def non_background_pixels(png: Path) -> int:
    """Pixels that are not the page's white background."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    return int((pixels.min(axis=-1) < 0.95).sum())


def keep(png: Path, name: str) -> None:
    target = os.environ.get("OPS_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(target) / name)


async def test_the_live_page_and_the_report_show_the_real_figures_in_chromium(tmp_path, warm_profile_cache):
    data = tmp_path / "d"
    seed_history(data)
    port = free_port()
    proc = start_http(data, port)
    try:
        async with http_client(port) as client:
            for text in (RISKY, SAFE, RISKY + " tonight", "buy ten more laptops for the new hires"):
                result = await client.call_tool("evaluate", {"text": text})
                assert not result.is_error, result.content[0].text
            taught = await client.call_tool("teach", {"profile": "risk", "label": "high", "text": RISKY})
            assert not taught.is_error
            time.sleep(0.1)
            stats = json.loads((await client.read_resource("latent://stats")).contents[0].text)["stats"]
        assert stats["risk"]["answered"] + stats["risk"]["escalated"] > 40 * HISTORY_HOURS  # history + live calls
        url = f"http://127.0.0.1:{port}/"
        assert httpx2.get(url, timeout=30).headers["content-type"].startswith("text/html")
        dom = browse(url, tmp_path / "chrome-dom", "--dump-dom")
        assert dom.returncode == 0, dom.stderr
        png = tmp_path / "page.png"
        shot = browse(url, tmp_path / "chrome-shot", f"--screenshot={png}")
        assert shot.returncode == 0 and png.exists(), shot.stderr
        assert_page(dom.stdout, png, stats)
        assert "Server: ready" in dom.stdout
        metrics = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        assert 'mcp_latent_tool_calls_total{outcome="ok",tool="evaluate"} 4.0' in metrics
        assert 'mcp_latent_taught_total{profile="risk"} 1.0' in metrics
        keep(png, "ops-page.png")
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    # The report, for stdio users: the same figures from the data dir alone, opened from a file.
    report = tmp_path / "report.html"
    done = subprocess.run(
        [*server_command(), "report", "--data-dir", str(data), "--out", str(report)],
        env=server_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dom = browse(report.as_uri(), tmp_path / "chrome-report", "--dump-dom")
    png = tmp_path / "report.png"
    browse(report.as_uri(), tmp_path / "chrome-report-shot", f"--screenshot={png}")
    assert_page(dom.stdout, png, stats)
    assert "evaluate" in dom.stdout and "Latency per tool" in dom.stdout
    keep(png, "ops-report.png")
