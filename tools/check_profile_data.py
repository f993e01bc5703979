#!/usr/bin/env python3
"""Check profile files before shipping them: duplicates, near-duplicates, label balance, lengths, and the
cross-validated figures the server itself fits.

    .venv/bin/python tools/check_profile_data.py                   # every shipped profile, real model
    .venv/bin/python tools/check_profile_data.py roi category      # some of them
    .venv/bin/python tools/check_profile_data.py --profiles-dir my/profiles --no-cv

Profiles are loaded and fitted exactly as the server does (LatentService -> ProfileFitter), so the figures are
the ones `mcp-latent profiles list` would show. Exit status 1 when a problem is found (exact or near duplicate,
labels out of balance beyond --max-imbalance), so it can gate a data change.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.profiles.spec import ProfileSpec, builtin_profiles_dir, read_profile_file

NEAR_DUPLICATE = 0.95  # cosine at or above which two exemplars say the same thing (the model can't tell them apart)
MAX_IMBALANCE = 1.5  # largest label / smallest label exemplar count
LENGTH_BUCKETS = ((1, 8), (9, 20), (21, 40), (41, 10_000))  # words: ticket title .. four sentences


@dataclass
class Finding:
    """One problem in a profile's data."""

    kind: str
    detail: str


def normalized(text: str) -> str:
    """Lowercase, punctuation and spacing collapsed: texts equal under it are duplicates."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def rows(spec: ProfileSpec) -> list[tuple[str, str]]:
    """(label, text) of every exemplar, in file order."""
    return [(label.name, text) for label in spec.labels for text in label.examples]


def exact_duplicates(spec: ProfileSpec) -> list[Finding]:
    seen: dict[str, tuple[str, str]] = {}
    found = []
    for label, text in rows(spec):
        key = normalized(text)
        if key in seen:
            other_label, other = seen[key]
            found.append(Finding("duplicate", f"[{label}] {text!r} == [{other_label}] {other!r}"))
        else:
            seen[key] = (label, text)
    return found


def near_duplicates(spec: ProfileSpec, vectors: np.ndarray, cutoff: float = NEAR_DUPLICATE) -> list[Finding]:
    """Pairs of distinct exemplars with cosine >= cutoff (unit vectors, file order); cross-label pairs first."""
    labelled = rows(spec)
    sims = vectors @ vectors.T
    upper = np.triu(sims, k=1)
    pairs = sorted(zip(*np.nonzero(upper >= cutoff), strict=True), key=lambda ij: -upper[ij])
    found = []
    for i, j in pairs:
        (label_i, text_i), (label_j, text_j) = labelled[i], labelled[j]
        if normalized(text_i) == normalized(text_j):
            continue  # reported as an exact duplicate
        kind = "near-duplicate" if label_i == label_j else "near-duplicate across labels"
        found.append(Finding(kind, f"{upper[i, j]:.3f} [{label_i}] {text_i!r} ~ [{label_j}] {text_j!r}"))
    return sorted(found, key=lambda f: f.kind != "near-duplicate across labels")


def balance(spec: ProfileSpec, max_imbalance: float = MAX_IMBALANCE) -> list[Finding]:
    """Answer labels out of balance (an abstain label is a different kind of set: its size is its own). Only the
    hand-written exemplars count: grouped ones (`groups`: a labelled sample of real writing by a named source) carry
    the real prior on purpose (issue 24: most real proposals are routine and low risk)."""
    counts = {label.name: len(label.examples) - len([g for g in label.groups if g]) for label in spec.answer_labels}
    ratio = max(counts.values()) / min(counts.values())
    if ratio > max_imbalance:
        return [Finding("imbalance", f"largest/smallest label = {ratio:.2f} > {max_imbalance} ({counts})")]
    return []


def length_table(spec: ProfileSpec) -> str:
    """Markdown table: exemplars per label, word-count spread and how many fall in each length bucket."""
    buckets = " | ".join(f"{lo}-{hi}w" if hi < 10_000 else f"{lo}+w" for lo, hi in LENGTH_BUCKETS)
    lines = [
        f"| label | n | words min/median/max | {buckets} | multi-sentence |",
        "|---|---|---|" + "---|" * len(LENGTH_BUCKETS) + "---|",
    ]
    for label in spec.labels:
        words = [len(text.split()) for text in label.examples]
        per_bucket = " | ".join(str(sum(lo <= w <= hi for w in words)) for lo, hi in LENGTH_BUCKETS)
        multi = sum(len(re.findall(r"[.!?](\s|$)", text.strip())) > 1 for text in label.examples)
        lines.append(
            f"| {label.name} | {len(words)} | {min(words)}/{statistics.median(words):g}/{max(words)} "
            f"| {per_bucket} | {multi} |"
        )
    return "\n".join(lines)


def suspects(spec: ProfileSpec, vectors: np.ndarray, c: float, show: int) -> list[str]:
    """Exemplars that a head fitted without them confidently files under another label: the likeliest
    mislabels or contradictions (5-fold out-of-fold predictions of the server's linear head, at its C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    labelled = rows(spec)
    names = [label.name for label in spec.labels]
    y = np.array([names.index(label) for label, _ in labelled])
    probs = cross_val_predict(LogisticRegression(C=c, max_iter=1000), vectors, y, cv=5, method="predict_proba")
    predicted = probs.argmax(axis=1)
    wrong = np.nonzero(predicted != y)[0]
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:show]
    return [
        f"{probs[i, predicted[i]]:.2f} [{labelled[i][0]} -> {names[predicted[i]]}] {labelled[i][1]!r}" for i in wrong
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="profile names (default: every file in --profiles-dir)")
    parser.add_argument("--profiles-dir", type=Path, default=builtin_profiles_dir())
    parser.add_argument("--data-dir", type=Path, help="server data dir to cache embeddings and fits in (default: temp)")
    parser.add_argument("--near", type=float, default=NEAR_DUPLICATE, help="near-duplicate cosine cutoff")
    parser.add_argument("--max-imbalance", type=float, default=MAX_IMBALANCE)
    parser.add_argument("--no-cv", action="store_true", help="skip the fit (no cross-validated figures)")
    parser.add_argument("--show", type=int, default=20, help="findings shown per kind")
    parser.add_argument("--suspects", type=int, default=0, help="list this many likeliest mislabelled exemplars")
    args = parser.parse_args()

    paths = [args.profiles_dir / f"{n}.toml" for n in args.names] or sorted(args.profiles_dir.glob("*.toml"))
    specs = [read_profile_file(p) for p in paths]  # validation errors name the file and field

    from mcp_latent.service.api import LatentService  # imported late: loads torch
    from mcp_latent.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp)
        # A profiles dir holding only the checked files, loaded and fitted like the server loads them.
        settings = Settings(data_dir=data_dir, profiles_dir=args.profiles_dir, builtin_profiles=False)
        service = LatentService(settings)
        service.start(fit_profiles=False)  # each checked profile is fitted below, in this thread
        service.wait_ready()
        problems = 0
        for spec in specs:
            profile = service.registry.get(spec.name)
            fitted = service.fitted_profile(profile.name) if not args.no_cv else None
            vectors = fitted.vectors if fitted is not None else service.embedder.embed([t for _, t in rows(spec)])
            findings = (
                exact_duplicates(spec) + near_duplicates(spec, vectors, args.near) + balance(spec, args.max_imbalance)
            )
            problems += len(findings)
            print(f"\n## {spec.name} ({len(rows(spec))} exemplars, {len(spec.labels)} labels, {args.profiles_dir})\n")
            print(length_table(spec))
            if fitted is not None:
                cal = fitted.calibration
                print(
                    f"\ncv_accuracy {cal.cv_accuracy:.3f}  cv_coverage {cal.cv_coverage:.3f}  "
                    f"cv_answered_accuracy {cal.cv_answered_accuracy or 0:.3f}  threshold {cal.threshold:.3f}  "
                    f"min_similarity {cal.min_similarity:.3f}  head C {cal.c:g}  knn_weight {cal.knn_weight:g}  "
                    f"words_weight {cal.words_weight:g}"
                )
            if args.suspects and fitted is not None:
                print(f"\nlikeliest mislabels (out-of-fold p, label -> predicted), top {args.suspects}:")
                for line in suspects(spec, vectors, fitted.calibration.c, args.suspects):
                    print(f"  {line}")
            kinds: dict[str, list[Finding]] = {}
            for finding in findings:
                kinds.setdefault(finding.kind, []).append(finding)
            for kind, items in kinds.items():
                print(f"\n{len(items)} {kind}:")
                for finding in items[: args.show]:
                    print(f"  {finding.detail}")
            if not findings:
                print("\nno duplicates, near-duplicates or imbalance")
        service.close()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
