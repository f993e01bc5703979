"""Settings say what the code does: their descriptions are the configuration table and the `--help`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mcp_latent.embedding.model_source import resolve_model_source
from mcp_latent.judge import stream
from mcp_latent.settings import Settings

SHIPPED = Path(resolve_model_source("")[0]).is_dir()


def described_rule(
    p: np.ndarray, right: np.ndarray, target: float, margin: float, sharpness: float = 1.0
) -> float | None:
    """The stream threshold exactly as the setting's description words it, computed the slow way: the lowest
    threshold at which the answered texts' accuracy (taught: as taught; others: their p, sharpened) less `margin`
    standard errors meets the target."""
    value = np.where(np.isnan(right), p if sharpness == 1.0 else stream.sharpened(p, sharpness), right)
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
    assert numbers[:6] == [
        stream.MIN_STREAM_VERDICTS,
        stream.MIN_STREAM_CHECKS,
        stream.STREAM_MARGIN_ERRORS,
        stream.MAX_SHARPNESS,
        stream.STREAM_SHARPNESS_CHECKS,
        stream.MIN_THRESHOLD,
    ]
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


@pytest.mark.skipif(not SHIPPED, reason="the shipped model package is not installed")
def test_embed_threads_sets_the_onnx_runtime_threads_and_torch_threads_still_does(tmp_path, monkeypatch):
    # `torch_threads` always set ONNX Runtime's threads too, which its name hid: `embed_threads` says what it does,
    # and the old name keeps working where the new one is unset.
    from mcp_latent.embedding.factory import load_configured_embedder

    def onnx_threads(**env: str) -> int:
        for key in ("MCP_LATENT_EMBED_THREADS", "MCP_LATENT_TORCH_THREADS"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(f"MCP_LATENT_{key.upper()}", value)
        embedder = load_configured_embedder(Settings(data_dir=tmp_path))
        assert embedder.backend.startswith("onnxruntime")
        return embedder._session.get_session_options().intra_op_num_threads

    assert onnx_threads(embed_threads="1") == 1
    assert onnx_threads(torch_threads="3") == 3
    assert onnx_threads(embed_threads="2", torch_threads="3") == 2
    assert "ONNX Runtime" in Settings.model_fields["embed_threads"].description
    assert "ONNX Runtime" in Settings.model_fields["torch_threads"].description
