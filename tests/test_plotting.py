"""Every plot goes through `mcp_latent.plotting`: with matplotlib missing, `profiles stats --plot` used to end in a
ModuleNotFoundError traceback while the curve plot of `build`/`tune` only logged; now each says the same one line
(what to install), `stats --plot` (a plot asked for) as its error, the others beside their text output."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT

from mcp_latent.plotting import INSTALL_HINT, PlotsUnavailable
from mcp_latent.service.usage_stats import ProfileStats

HIDE_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"


def recorded_stats(data_dir):
    stats = ProfileStats(data_dir / "stats.sqlite")
    stats.record("risk", "answered", 3)
    stats.record("risk", "escalated", 1)
    stats.flush()


def test_stats_plot_without_matplotlib_is_one_clear_line_not_a_traceback(tmp_path):
    recorded_stats(tmp_path)
    script = HIDE_MATPLOTLIB + textwrap.dedent(
        f"""
        from mcp_latent.cli.main import main
        sys.exit(main(["profiles", "stats", "--data-dir", {str(tmp_path)!r}, "--plot", {str(tmp_path / "e.png")!r}]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"mcp-latent: {INSTALL_HINT}"
    assert "install matplotlib: .venv/bin/pip install matplotlib" in done.stderr
    assert not (tmp_path / "e.png").exists()


def test_stats_plot_with_matplotlib_writes_the_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from mcp_latent.cli.main import main

    recorded_stats(tmp_path)
    assert main(["profiles", "stats", "--data-dir", str(tmp_path), "--plot", str(tmp_path / "out" / "e.png")]) == 0
    assert (tmp_path / "out" / "e.png").stat().st_size > 1000
    assert "risk" in capsys.readouterr().out


def test_the_curve_plot_and_the_eval_plots_say_the_same_line_and_carry_on(tmp_path, monkeypatch, caplog):
    from mcp_latent.eval import quality
    from mcp_latent.judge.fitted import FittedProfile
    from mcp_latent.profiles import report
    from mcp_latent.profiles.spec import ProfileSpec

    rng = np.random.default_rng(0)
    labels = [{"name": n, "examples": [f"{n} {i}" for i in range(12)]} for n in ("a", "b", "c")]
    spec = ProfileSpec.model_validate({"name": "s", "labels": labels})
    centres = rng.normal(size=(3, 16))
    y = np.repeat(np.arange(3), 12)
    vectors = (centres[y] + 0.7 * rng.normal(size=(36, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fitted = FittedProfile.fit(spec, vectors, [e for lab in labels for e in lab["examples"]], y)
    assert fitted.calibration.evidence is not None
    m = quality.metrics(fitted, vectors, [spec.labels[i].name for i in y], with_baselines=False)

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotsUnavailable, match="install matplotlib: .venv/bin/pip install matplotlib"):
        report.plot(fitted.calibration, spec, tmp_path / "s.curve.png")
    with caplog.at_level(logging.WARNING):
        assert quality.plots(m, tmp_path, "s") == []
    assert INSTALL_HINT in caplog.text
    assert not list(tmp_path.glob("*.png"))

    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    assert report.plot(fitted.calibration, spec, tmp_path / "s.curve.png").stat().st_size > 5000
    assert {p.name for p in quality.plots(m, tmp_path, "s")} >= {"reliability.png", "coverage.png"}


def test_matplotlib_is_imported_in_one_place():
    users = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "mcp_latent").rglob("*.py")
        if "import matplotlib" in path.read_text(encoding="utf-8")
    }
    assert users == {"mcp_latent/plotting.py"}
