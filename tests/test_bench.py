"""The benchmark's --quick mode runs end to end on both embedding paths, so the suite never rots (no speed is
asserted here: the goals are ratios the benchmark reports, not test thresholds)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, server_env

pytestmark = pytest.mark.e2e


def test_bench_quick_writes_table_json_and_plot(tmp_path, warm_profile_cache):
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--out", str(tmp_path)],
        env=server_env(),
        check=True,
        timeout=1200,
        capture_output=True,
    )
    results = json.loads((tmp_path / "bench.json").read_text())
    assert set(results["paths"]) == {"torch", "onnx"}
    for path, backend in (("torch", "torch"), ("onnx", "onnxruntime")):
        measured = results["paths"][path]
        assert measured["tools"]["evaluate handle, 1 profile"]["n"] == 100 and measured["ping"]["n"] == 100
        assert measured["cold_start"]["warm"]["backend"] == backend, "each server must run the path it is named for"
        assert measured["memory_mib"]["VmRSS"] > 0
        assert measured["tools"]["embed 64 sentences"]["server_cpu_ms_mean"] > 0  # the server's pid was found
    assert {g["goal"] for g in results["goals"]} >= {"serving RSS: ONNX / torch", "embed 64: ONNX throughput / torch's"}
    assert results["tokens"]["handoff_3_verdicts_chars"] <= 240
    table = (tmp_path / "bench.md").read_text()
    assert "ping (protocol floor)" in table and "ONNX Runtime p50 ms" in table and "torch / ONNX" in table
    assert (tmp_path / "latency.png").stat().st_size > 1000
