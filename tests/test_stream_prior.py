"""The exemplars' prior on the answered top's sharpness (`judge.stream.exemplar_prior`, a `stream_sharpness` option
that tools/stream_prior_replay.py replays and the server does not use), and the stream trace that lets such rules be
replayed (`MCP_LATENT_STREAM_TRACE`). docs/learning.md, the `stream6` section."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mcp_latent.judge.operating_point import Evidence, Family
from mcp_latent.judge.stream import exemplar_evidence, exemplar_prior, stream_sharpness
from mcp_latent.judge.stream_rule import MIN_STREAM_CHECKS


def _calibrated(n: int, sharpness: float, low: float, high: float, seed: int):
    """n verdicts at p uniform in [low, high] whose best label was right with p's log-odds scaled by `sharpness`."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(low, high, n)
    z = sharpness * np.log(p / (1 - p))
    return p, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)


def test_the_prior_pulls_the_sharpness_towards_the_exemplars_top_and_the_checks_outweigh_it_as_they_grow():
    checks_p, checks_right = _calibrated(500, 1.0, 0.5, 0.93, 1)  # the escalated band: calibrated
    top_p, top_right = _calibrated(1500, 0.7, 0.9, 0.999, 2)  # the exemplars' top: overconfident
    alone = stream_sharpness(checks_p, checks_right)
    assert alone == pytest.approx(1.0, abs=0.15)
    assert stream_sharpness(checks_p, checks_right, (top_p, top_right), 0.0) == alone  # no weight: as before
    light = stream_sharpness(checks_p, checks_right, (top_p, top_right), 100.0)
    heavy = stream_sharpness(checks_p, checks_right, (top_p, top_right), 1e6)
    assert heavy == pytest.approx(0.7, abs=0.1)  # the prior alone
    assert heavy < light < alone
    # the same weight moves 100 checks further than 500 (shrunk towards the checks as they grow)
    few = stream_sharpness(checks_p[:100], checks_right[:100], (top_p, top_right), 100.0)
    assert abs(few - heavy) < abs(light - heavy)


def test_too_few_exemplars_at_the_top_make_no_prior():
    top_p, top_right = _calibrated(MIN_STREAM_CHECKS - 1, 0.5, 0.9, 0.999, 3)
    assert not exemplar_prior(top_p, top_right, 1000.0).any()
    assert exemplar_prior(*_calibrated(MIN_STREAM_CHECKS, 0.5, 0.9, 0.999, 3), 1000.0).any()


def _evidence(p: np.ndarray, right: np.ndarray) -> Evidence:
    family = Family("ensemble", 0.0, 1.0, p, right.astype(bool), None)
    return Evidence(np.ones(len(p)), None, (family,))


def test_the_calibrations_own_family_is_the_evidence(service):
    fitted = service.live["kind"].snapshot
    p, right = _calibrated(200, 1.0, 0.5, 0.999, 4)
    calibration = replace(fitted.calibration, evidence=_evidence(p, right), family="ensemble")
    got = exemplar_evidence(calibration)
    assert got is not None and np.array_equal(got[0], p) and np.array_equal(got[1], right)
    assert exemplar_evidence(replace(calibration, evidence=None)) is None
    assert exemplar_evidence(replace(calibration, family="other")) is None


def _record_with_stream(fitted, rng, trace=None):
    """A record of 800 verdicts whose escalated ones (p < 0.93) were right as often as p said."""
    from mcp_latent.service.stream_record import StreamRecord

    record = StreamRecord(1000)
    record.trace = trace
    dim = fitted.vectors.shape[1]
    for _ in range(800):
        vector = rng.normal(size=dim).astype(np.float32)
        p = float(rng.uniform(0.55, 0.999))
        record.observe(vector, p, True, "fruit")
        if p < 0.93:
            right = rng.random() < p
            record.taught(vector, "fruit" if right else "tools", (p, "fruit"))
    return record


def test_the_trace_writes_a_line_per_run_and_the_exemplar_evidence_once_per_calibration(service, tmp_path):
    fitted = service.live["kind"].snapshot
    path = tmp_path / "trace.jsonl"
    record = _record_with_stream(fitted, np.random.default_rng(9), (str(path), "kind"))
    p, right = _calibrated(300, 1.0, 0.3, 0.999, 10)
    snapshot = fitted.with_threshold(0.9, "fit")
    snapshot.calibration = replace(fitted.calibration, evidence=_evidence(p, right), family="ensemble")
    record.operate(snapshot, 0.9, None)
    record.operate(snapshot, 0.9, None)  # a restate on the same calibration: counts only
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["profile"] for line in lines] == ["kind", "kind"]
    assert lines[0]["observed"] == 800 and lines[0]["taught"] == record._taught_total > 0
    assert lines[0]["exemplar_p"] == [round(float(x), 4) for x in p[p >= 0.5]] and "exemplar_p" not in lines[1]
    assert lines[0]["stream_threshold"] == pytest.approx(record.stream_threshold)
    record.trace = (str(tmp_path / "missing" / "trace.jsonl"), "kind")  # an unwritable trace never stops the rule
    record.operate(snapshot, 0.9, None)
    assert record.stream_threshold is not None


def test_a_service_with_the_trace_setting_traces_each_profiles_stream_rule(
    settings, fake_embedder, fruit_tools_profile
):
    # Through the service: MCP_LATENT_STREAM_TRACE names the file, the fit's first operate and every restate after
    # 25 taught texts write a line for the profile, the first with its calibration's exemplar evidence.
    from mcp_latent.service.api import LatentService

    path = settings.data_dir / "trace.jsonl"
    service = LatentService(settings.model_copy(update={"stream_trace": str(path)}), embedder=fake_embedder)
    service.start()
    try:
        service.wait_ready(5)
        texts = [f"apple {i} banana {i % 7} pear {i % 3}" for i in range(40)]
        for text in texts:
            service.evaluate(text=text, profiles=["kind"])
        for text in texts[:30]:
            service.teach("kind", "fruit", text=text)
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    finally:
        service.close()
    mine = [line for line in lines if line["profile"] == "kind"]
    assert mine, lines
    assert max(line["taught"] for line in mine) >= 25
    assert "exemplar_p" in mine[0] and len(mine[0]["exemplar_p"]) == len(mine[0]["exemplar_right"])
