"""The usage page's figures and HTML without a server: counts and latencies formatted as what they are, the
tables alone (with how to get plots) when matplotlib is missing, the series bucketed to a bounded number of points
with nothing lost, and `mcp-latent report` writing one file from the data dir alone."""

from __future__ import annotations

import sys
import time

from mcp_latent.cli.main import main
from mcp_latent.ops.dashboard import MAX_POINTS, bucketed, gather
from mcp_latent.ops.page import render
from mcp_latent.service.usage_stats import ProfileStats


def recorded(tmp_path) -> ProfileStats:
    stats = ProfileStats(tmp_path / "stats.sqlite")
    for _ in range(3):
        stats.record("risk", "answered")
    stats.record("risk", "escalated")
    stats.record("risk", "taught")
    stats.record("risk", "agreed")
    stats.record_call("evaluate", "ok", 0.00096)  # under a millisecond
    stats.record_call("evaluate", "error", 0.00096)
    return stats


def test_latency_is_shown_in_milliseconds_and_shares_as_percentages(tmp_path):
    page = render(gather(recorded(tmp_path), 700))
    # 0.96 ms was shown as "96.0%" (every float <= 1 was taken for a share)
    assert (
        '<td>evaluate</td><td class="n">2</td><td class="n">1</td><td class="n">0.96</td><td class="n">1.00</td>'
        in page
    )
    assert '<td>risk</td><td class="n">3</td><td class="n">1</td><td class="n">25.0%</td><td class="n">1</td>' in page
    assert "<b>2,100</b>LLM tokens saved (est.)" in page and "<b>25.0%</b>share left to the LLM" in page
    assert "<svg" in page and "<script" not in page


def test_without_matplotlib_the_page_has_its_tables_and_says_how_to_get_plots(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    page = render(gather(recorded(tmp_path), 700))
    assert "pip install 'mcp-latent[plots]'" in page and "<svg" not in page
    assert "<td>risk</td>" in page and "<td>evaluate</td>" in page


def test_series_are_bucketed_to_a_bounded_number_of_points_and_keep_every_count():
    start = int(time.time() // 60)
    rows = [(start + m, {"answered": 2, "escalated": 1}) for m in range(0, 3 * 1440, 7)]
    points, width = bucketed(rows)
    assert len(points) <= MAX_POINTS and width == 360
    assert sum(a for _, a, _ in points) == 2 * len(rows) and sum(e for _, _, e in points) == len(rows)
    assert bucketed([]) == ([], 1)


def test_report_writes_one_html_file_from_the_data_dir(tmp_path, capsys):
    data = tmp_path / "d"
    stats = recorded(data)
    stats.flush()
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--data-dir", str(data), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for shipped in ("category", "roi"):  # profiles without counts are listed too (from their files)
        assert f'<td>{shipped}</td><td class="n">0</td>' in page
    assert '<td>risk</td><td class="n">3</td>' in page
    assert "wrote" in capsys.readouterr().err
    assert 'http-equiv="refresh"' not in page  # a saved report does not reload itself


def test_report_never_loads_the_model(tmp_path):
    """A report reads the stats file and the profile files only: no torch, no ONNX Runtime, no store."""
    import subprocess

    from test_cli import HEAVY_MODULES

    command = [sys.executable, "-X", "importtime", "-m", "mcp_latent", "report", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run([*command, "--out", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {name for name in imported if name.split(".")[0] in HEAVY_MODULES}
    assert (tmp_path / "r.html").stat().st_size > 1000
