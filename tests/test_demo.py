"""The shadow-board demo from the README runs end to end against a real server."""

import subprocess
import sys

import pytest
from conftest import ROOT, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("warm_profile_cache")]


def test_shadow_board_runs_rounds_with_server_side_deltas():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "shadow_board.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=server_env(),
    ).stdout
    assert "round 1" in out and "round 2" in out
    assert "vs parent h_" in out  # deltas come from evaluate(compare_parent=true)
    assert "pessimist risk  high" in out  # the Friday-night proposal is judged high risk
    assert "converged" in out or "without converging" in out
    assert "savings (latent://stats)" in out  # the loop: escalations are taught back and counted
