"""tools/bench_faults.py in small (a few hundred calls): mixed HTTP load with no error, a short paced soak, kill -9
of a server mid-write and a PostgreSQL crash and restart mid-load, with no acknowledged handoff or teach lost."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.e2e


def test_load_soak_and_faults_lose_nothing_acknowledged(tmp_path, warm_profile_cache):
    command = [sys.executable, str(ROOT / "tools" / "bench_faults.py"), "--quick", "--out", str(tmp_path)]
    run = subprocess.run(
        [*command, "--profile-cache", str(warm_profile_cache)], timeout=1200, capture_output=True, text=True
    )
    report = json.loads((tmp_path / "faults.json").read_text())
    load = report["load"]
    assert load["calls"] == 100 and load["errors"] == 0 and load["handles_unreadable"] == 0, load
    assert report["soak"]["calls"] > 50 and report["soak"]["errors"] == 0, report["soak"]
    for fault in ("sqlite_kill_9", "postgres_faults"):
        outcome = report[fault]
        assert outcome["handoffs_acknowledged"] >= 10 and outcome["teaches_acknowledged"] >= 3, outcome
        assert (outcome["handoffs_lost"], outcome["teaches_lost"]) == (0, 0), outcome
    assert report["postgres_faults"]["unclear_tool_errors"] == 0, report["postgres_faults"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
