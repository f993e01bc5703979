"""Settings' descriptions say what the code does (they are the README's configuration table and the `--help`)."""

from __future__ import annotations

import re

import numpy as np

from mcp_latent.judge import stream
from mcp_latent.settings import Settings


def described_rule(p: np.ndarray, right: np.ndarray, target: float, margin: float) -> float | None:
    """The stream threshold exactly as the setting's description words it, computed the slow way: the lowest
    threshold at which the answered texts' accuracy (taught: as taught; others: their p) less `margin` standard
    errors meets the target."""
    value = np.where(np.isnan(right), p, right)
    for t in sorted(set(p.tolist())):
        answered = value[p >= t]
        mean = answered.mean()
        if mean - margin * np.sqrt(mean * (1 - mean) / len(answered)) >= target - 1e-12:
            return max(t, 0.5)
    return None


def test_the_stream_threshold_setting_describes_the_rule_the_code_runs():
    # It used to say "the lowest whose answered texts' mean calibrated p meets the target" with 200 written out:
    # the code has since subtracted two standard errors, counted taught texts as taught, and sharpened p.
    text = Settings.model_fields["stream_calibration_window"].description
    assert "mean calibrated p meets" not in text
    numbers = [float(n) for n in re.findall(r"\b\d+(?:\.\d+)?\b", text)]
    assert numbers[:4] == [stream.MIN_STREAM_VERDICTS, stream.MIN_STREAM_CHECKS, stream.STREAM_MARGIN_ERRORS, 1.0]
    assert f"below {stream.MIN_SHARPNESS:g}" in text
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(stream.MIN_STREAM_VERDICTS, 3 * stream.MIN_STREAM_VERDICTS))
        p = np.round(rng.uniform(0.5, 1.0, n), 2)
        right = np.where(rng.random(n) < 0.3, (rng.random(n) < p).astype(float), np.nan)
        target = float(rng.uniform(0.85, 0.97))
        expected = described_rule(p, right, target, stream.STREAM_MARGIN_ERRORS)
        assert stream.stream_threshold(p, target, right) == expected
        # the rule the old text described answers lower (or equal) on the same verdicts: the margin matters
        old = described_rule(p, right, target, 0.0)
        assert expected is None or (old is not None and old <= expected)
    too_few = np.full(stream.MIN_STREAM_VERDICTS - 1, 0.99)
    assert stream.stream_threshold(too_few, 0.9) is None
    assert (
        stream.stream_sharpness(too_few[: stream.MIN_STREAM_CHECKS - 1], np.ones(stream.MIN_STREAM_CHECKS - 1)) is None
    )
