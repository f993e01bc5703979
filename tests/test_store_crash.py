"""kill -9 during writes from two processes on one data dir loses no acknowledged handoff or taught exemplar."""

import json
import subprocess
import sys

from conftest import ROOT


def test_kill_9_of_two_writers_loses_nothing_acknowledged(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_crash.py"),
            "--rounds",
            "3",
            "--writers",
            "2",
            "--out",
            str(tmp_path),
        ],
        timeout=600,
        capture_output=True,
        text=True,
    )
    totals = json.loads((tmp_path / "crash.json").read_text())["totals"]
    assert totals["handoffs"] >= 3 * 2 * 20 and totals["taught"] > 0, run.stdout + run.stderr  # writes were in flight
    assert (totals["lost_handoffs"], totals["lost_taught"], totals["search_misses"]) == (0, 0, 0), run.stdout
    assert totals["rows_in_store"] >= totals["handoffs"]
    assert run.returncode == 0, run.stderr
