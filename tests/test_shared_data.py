"""Real labeled data (../shared/data/hwu64): a profile built with the CLI abstains on intents it was never
given and answers its own, through a real stdio server. Skipped where the shared data is absent."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import SHARED_DATA
from mcp import Client
from test_e2e_stdio import call, params, server_command

HWU64 = SHARED_DATA / "hwu64" / "hwu64.jsonl"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.anyio,
    pytest.mark.skipif(not HWU64.exists(), reason="shared data not present"),
]
PER_INTENT = 12  # test rows asked about per intent: enough to see rates, small enough for CI


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_built_profile_abstains_on_unseen_intents_through_the_server(tmp_path):
    rows = [json.loads(line) for line in HWU64.read_text(encoding="utf-8").splitlines()]
    intents = sorted({r["label"] for r in rows})[:16]
    unseen = intents[3::4]  # the hold-out pattern on a 16-intent slice: 12 in the profile, 4 unseen
    subset = tmp_path / "hwu16.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"] in intents), encoding="utf-8")
    build = [*server_command(), "profiles", "build", "--from", str(subset), "--name", "hwu16", "--split", "train"]
    build += ["--out", str(tmp_path / "profiles"), "--data-dir", str(tmp_path / "d")]
    # The simulated out-of-scope target this test's 60% floor was set for; the default moved to 0.75 (issue 24:
    # real recall sits above the simulation), which flags 26 of these 44 unseen-intent texts (59%) instead.
    build += ["--target-oos-recall", "0.8"]
    for intent in unseen:
        build += ["--exclude-label", intent]
    built = subprocess.run(build, capture_output=True, text=True, timeout=600, check=True)
    assert "out-of-scope recall (simulated)" in built.stderr  # 12 labels: the hidden-label simulation ran

    def asked(labels):
        picked = {label: [] for label in labels}
        for r in rows:
            if r["split"] == "test" and r["label"] in picked and len(picked[r["label"]]) < PER_INTENT:
                picked[r["label"]].append(r["text"])
        return [(text, label) for label, texts in picked.items() for text in texts]

    async with Client(
        params(tmp_path / "d", "--profiles-dir", str(tmp_path / "profiles")), read_timeout_seconds=300
    ) as client:

        async def verdict(text):
            return (await call(client, "evaluate", {"text": text, "profiles": ["hwu16"]}))["verdicts"]["hwu16"]

        off_topic = [await verdict(text) for text, _ in asked(unseen)]
        on_topic = [(await verdict(text), label) for text, label in asked([i for i in intents if i not in unseen])]
    flagged = sum(bool(v.get("unsure")) and v["label"] is None for v in off_topic) / len(off_topic)
    answered = [(v["label"], label) for v, label in on_topic if not v.get("unsure")]
    assert flagged >= 0.6, f"only {flagged:.0%} of unseen-intent texts were flagged"
    assert len(answered) / len(on_topic) >= 0.5
    assert sum(got == want for got, want in answered) / len(answered) >= 0.9

    # The evaluation harness on the same profile: every figure, the anchors beside it, and the plots.
    evaluate = [*server_command(), "profiles", "eval", "--profile", "hwu16", "--from", str(subset), "--split", "test"]
    evaluate += ["--out", str(tmp_path / "eval"), "--profiles-dir", str(tmp_path / "profiles")]
    subprocess.run([*evaluate, "--data-dir", str(tmp_path / "d")], capture_output=True, timeout=600, check=True)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert 0 < summary["out_of_scope_rows"] < summary["in_scope_rows"]
    assert summary["accuracy"] > 0.85 and summary["answered_accuracy"] >= summary["accuracy"]
    assert summary["out_of_scope_recall"] >= 0.6 and summary["ece"] < 0.1
    assert {"1-NN", "nearest centroid", "linear head alone"} <= set(summary["baselines"])
    assert "linear head alone, p >= 0.70" in summary["anchor_points"]  # one anchor of the 0.50-0.95 sweep
    assert summary["fit"]["cv_out_of_scope_recall"] is not None
    for plot in ("reliability", "coverage", "out_of_scope", "confusion"):
        assert (tmp_path / "eval" / f"{plot}.png").stat().st_size > 5000
