#!/usr/bin/env python3
"""Which exemplars and which cross-validation make the shipped profiles honest on other writers (issue 24)?
Fits variants of the risk, roi and category profiles and judges the realistic held-out proposals with each, by the
decision code the server runs (`FittedProfile.fit` then `FittedProfile.judge`, the real model).

    .venv/bin/python tools/writer_shift_variants.py                       # every variant, all three profiles
    .venv/bin/python tools/writer_shift_variants.py --variants grouped --profiles risk

Variants, built from the shipped files (hand-written exemplars have no `groups`; the real-shaped ones name their
source): `synthetic` (hand-written only: the profiles before issue 24), `merged` (all, groups dropped: ordinary
stratified cross-validation), `grouped` (all, sources held out whole: what ships), `real` (real-shaped only,
grouped), `thin` (grouped, with --thin hand-written exemplars per label). The off_topic label is kept whole in
every variant. Figures on the held-out set's agreed labels: answered share, agreement when answered,
closed-set accuracy (best label), off-topic texts abstained, and the best coverage any threshold on the served
`p` could reach at the target on these very texts (an upper bound, read off the answers: never used to choose).
The held-out texts only measure; nothing is fitted or chosen on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.profiles.fitter import ExemplarVectors, flatten
from mcp_latent.profiles.spec import ProfileSpec, read_profile_file

HELDOUT = ROOT / "tools" / "data" / "realistic" / "heldout.jsonl"
VARIANTS = ("synthetic", "merged", "grouped", "real", "thin")
TARGETS = {"risk": 0.9, "roi": 0.9, "category": 0.95}


def variant_spec(spec: ProfileSpec, variant: str, thin: int) -> ProfileSpec:
    data = spec.model_dump()
    for label in data["labels"]:
        if label["abstain"]:
            continue
        n_grouped = len([g for g in label["groups"] if g])
        real, hand = label["examples"][:n_grouped], label["examples"][n_grouped:]
        groups = label["groups"][:n_grouped]
        if variant == "synthetic":
            label["examples"], label["groups"] = hand, []
        elif variant == "merged":
            label["groups"] = []
        elif variant == "real":
            label["examples"], label["groups"] = real, groups
        elif variant == "thin":
            label["examples"], label["groups"] = real + hand[:thin], groups
    return ProfileSpec.model_validate(data)


def measure(fitted: FittedProfile, rows: list[dict], vectors: np.ndarray, profile: str) -> dict:
    texts = [r["text"].strip() for r in rows]
    decisions, _, _ = fitted.judge(vectors, texts=texts)
    names = fitted.labels
    answered, best = decisions.answered, decisions.best
    scored = [i for i, r in enumerate(rows) if r[profile] is not None and r[profile] == r[f"{profile}_judge2"]]
    off = [i for i, r in enumerate(rows) if r[profile] is None]
    right = np.array([names[best[i]] == rows[i][profile] for i in scored])
    answered_in = np.array([answered[i] for i in scored])
    order = np.argsort(-decisions.p[scored])
    running = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    reach = np.nonzero(running >= TARGETS[profile])[0]
    return {
        "answered": float(answered_in.mean()),
        "agreement": float(right[answered_in].mean()) if answered_in.any() else None,
        "closed_set": float(right.mean()),
        "off_topic_abstained": float(1 - answered[off].mean()),
        "upper_bound_coverage_at_target": float((reach.max() + 1) / len(scored)) if len(reach) else 0.0,
        "threshold": float(fitted.calibration.threshold),
        "cv_coverage": fitted.calibration.cv_coverage,
        "cv_answered_accuracy": fitted.calibration.cv_answered_accuracy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--profiles", nargs="+", default=["risk", "roi", "category"])
    parser.add_argument("--profiles-dir", type=Path, default=ROOT / "profiles")
    parser.add_argument("--thin", type=int, default=150, help="hand-written exemplars per label kept by `thin`")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mcp-latent-writer-shift"), help="vector cache dir")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from mcp_latent.embedding.factory import load_configured_embedder
    from mcp_latent.settings import Settings

    embedder = load_configured_embedder(Settings())
    args.cache.mkdir(parents=True, exist_ok=True)
    cache = ExemplarVectors(args.cache / "vectors.npz")
    rows = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_vectors = cache.lookup([r["text"].strip() for r in rows], embedder)
    results: dict = {}
    print("| variant | profile | exemplars | answered | agreement | closed-set | off-topic abstained | upper bound |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants:
        for profile in args.profiles:
            spec = variant_spec(read_profile_file(args.profiles_dir / f"{profile}.toml"), variant, args.thin)
            texts, y = flatten(spec)
            fitted = FittedProfile.fit(spec, cache.lookup(texts, embedder), texts, y)
            f = measure(fitted, rows, held_vectors, profile)
            results.setdefault(variant, {})[profile] = f
            print(
                f"| {variant} | {profile} | {len(y)} | {f['answered']:.1%} | "
                f"{'n/a' if f['agreement'] is None else format(f['agreement'], '.1%')} | {f['closed_set']:.1%} | "
                f"{f['off_topic_abstained']:.1%} | {f['upper_bound_coverage_at_target']:.1%} |",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
