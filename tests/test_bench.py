"""The benchmark's --quick mode runs end to end, so the suite never rots (no speed is asserted here)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.e2e


def test_bench_quick_writes_table_json_and_plot(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--out", str(tmp_path)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["tools"]["evaluate handle, 1 profile"]["n"] == 100 and results["ping"]["n"] == 100
    assert results["tokens"]["handoff_3_verdicts_chars"] <= 240
    assert "ping (protocol floor)" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "latency.png").stat().st_size > 1000
