"""A profile file's `pair_examples` (issue 24 item 1: "a revision that adds a rollback plan is not a copy of the one
without"): minimal pairs written for the memory's guard and radius only. They join the memory's evidence, never
the head, the words expert, the calibration or what is answered from memory; files without them keep their hashes.
The fake embedder and the real fitter and service paths (the shipped profiles with the real model:
tools/teach_sticks.py, tools/memory_pairs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import HashingEmbedder

from mcp_latent.judge.memory import MIN_PAIRS
from mcp_latent.profiles.fitter import ProfileFitter, flatten
from mcp_latent.profiles.registry import ProfileRegistry
from mcp_latent.profiles.spec import ProfileSpec, read_profile_file, write_profile_file

TOPICS = ["billing database", "orders table", "search cluster", "payments queue", "auth service", "media bucket"]
TOPICS += ["ledger export", "invoice worker", "session store", "report cache", "email relay", "image resizer"]
SAFE = [f"migrate the {t} this weekend with a tested rollback plan and a verified backup" for t in TOPICS]
RISKY = [f"rewrite the {t} on friday night straight in production without review" for t in TOPICS]
# minimal pairs: the same proposal with and without its safeguards, labelled apart (none is an exemplar)
PAIR_SAFE = [f"upgrade the {t} cluster version in the maintenance window with a rollback plan" for t in TOPICS]
PAIR_RISKY = [f"upgrade the {t} cluster version in the maintenance window with no rollback plan" for t in TOPICS]


def spec(pairs: bool) -> ProfileSpec:
    labels = [
        {"name": "low", "examples": SAFE, **({"pair_examples": PAIR_SAFE} if pairs else {})},
        {"name": "high", "examples": RISKY, **({"pair_examples": PAIR_RISKY} if pairs else {})},
    ]
    return ProfileSpec.model_validate({"name": "risky", "labels": labels, "min_similarity": -1.0})


def test_a_file_without_pair_examples_keeps_its_hashes_and_one_with_them_is_another_fit(tmp_path: Path):
    without, with_pairs = spec(False), spec(True)
    write_profile_file(without, tmp_path / "risky.toml")
    assert "pair_examples" not in (tmp_path / "risky.toml").read_text(encoding="utf-8")
    assert read_profile_file(tmp_path / "risky.toml").fit_hash() == without.fit_hash()
    assert with_pairs.fit_hash() != without.fit_hash()
    write_profile_file(with_pairs, tmp_path / "risky.toml")
    assert read_profile_file(tmp_path / "risky.toml").labels[1].pair_examples == PAIR_RISKY
    assert flatten(with_pairs)[0] == flatten(without)[0]  # not exemplars
    assert flatten(with_pairs, pairs=True)[0] == PAIR_SAFE + PAIR_RISKY


def test_pair_examples_are_the_memorys_evidence_and_nothing_else(tmp_path: Path):
    fitter = ProfileFitter(tmp_path / "cache", HashingEmbedder())
    fitted = {}
    for pairs in (False, True):
        folder = tmp_path / f"profiles-{pairs}"
        folder.mkdir()
        write_profile_file(spec(pairs), folder / "risky.toml")
        fitted[pairs] = fitter.fitted(ProfileRegistry(folder, include_builtin=False).load_all()["risky"])
    plain, paired = fitted[False], fitted[True]
    # the verdicts' model is the same fit: head, calibration, rows
    assert paired.n == plain.n == len(SAFE) + len(RISKY)
    assert np.array_equal(paired.weights, plain.weights) and paired.calibration == plain.calibration
    # the memory is fitted on the pairs too: minimal pairs enough to hold the guard to the target's share
    assert plain.memory is not None and paired.memory is not None
    assert paired.memory.budgeted and not plain.memory.budgeted
    assert paired.memory.close is not None and plain.memory.close is not None
    minimal = int((paired.memory.close[:, 1] == 0).sum())
    assert minimal >= MIN_PAIRS and minimal > int((plain.memory.close[:, 1] == 0).sum())
    # nothing is answered from a pair example: a copy of one is judged by the model like any new text
    embedder = HashingEmbedder()
    for text in (PAIR_SAFE[0], PAIR_RISKY[0]):
        verdict = paired.verdict(embedder.embed([text])[0], text=text, detail=True)
        assert verdict.memory is None
    # a copy of an exemplar still is
    copy = paired.verdict(embedder.embed([SAFE[0]])[0], text=SAFE[0], detail=True)
    assert copy.memory is not None and copy.label == "low"


def test_a_served_profile_with_pair_examples_refits_its_memory_with_them(settings, fake_embedder):
    from mcp_latent.service.api import LatentService

    settings.user_profiles_dir.mkdir(parents=True, exist_ok=True)
    write_profile_file(spec(True), settings.user_profiles_dir / "risky.toml")
    service = LatentService(settings, embedder=fake_embedder)
    try:
        service.start()
        service.wait_ready(5)
        assert service.live["risky"].snapshot.memory.budgeted
        taught = "migrate the billing database this weekend with a tested rollback plan, backup verified"
        service.teach(labels={"risky": "low"}, text=taught)
        assert service.live["risky"].wait_refitted(120)
        snapshot = service.live["risky"].snapshot
        assert snapshot.memory is not None and snapshot.memory.budgeted  # the refit kept the pairs as evidence
        verdict = service.evaluate(text=taught, profiles=["risky"], detail=True)["verdicts"]["risky"]
        assert verdict["label"] == "low" and verdict["memory"]["taught"] is True
    finally:
        service.close()
