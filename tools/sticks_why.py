#!/usr/bin/env python3
"""Why is a paraphrase of a taught text not answered? Teach as `tools/teach_sticks.py` does (same draw, same service
code), let the refits settle, then read each paraphrase of a taught text the way the served snapshot does and say
what stopped it, per profile:

- `answered` (from memory or by the ensemble), or `wrong` (answered with another label than the one taught);
- `gate`: the scope gate called it out of scope;
- `radius`: the ensemble was unsure and the taught original is further than the memory's radius;
- `guard`: within the radius, but the profile's model reads it further from the original than the guard's limit;
- `p`: not a copy by memory's rule and the ensemble's p for its best label is below the threshold (with whether
  that best label is the taught one).

    .venv/bin/python tools/sticks_why.py --profile roi [--data tools/data/realistic/heldout.jsonl
        --paraphrases tools/data/realistic/paraphrases.jsonl] [--json OUT.json]

Prints a Markdown table, one row per paraphrase, and the count per reason. `--rewrites` reads the minimal-pair
rewrites of taught texts instead (whose label differs from the taught one): there `answered` is the wrong answer,
the taught label, and `from_memory` says whether memory gave it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teach_sticks import PROFILES, ROOT, draw  # noqa: E402


def why(service, profile: str, text: str, original: str, taught: str) -> dict:
    """One paraphrase read by the served snapshot of `profile`: its verdict and what decided it."""
    from mcp_latent.judge.memory_evidence import PairReader

    verdict = service.evaluate(text=text, profiles=[profile], detail=True)["verdicts"][profile]
    snapshot = service.live[profile].snapshot
    vector = service.embedder.embed([text])[0]
    rows = [i for i, t in enumerate(snapshot.texts) if t == original]
    row = rows[-1]
    sim = float(snapshot.vectors[row] @ vector)
    memory = snapshot.memory
    reader = PairReader(snapshot.head(), snapshot.vectors, snapshot.texts, snapshot.y)
    shift, corroborated = reader.query_shift(vector, text, row)
    model_p, model_label = snapshot.verdict(vector, text).model or (None, None)
    nearest = float(np.max(snapshot.vectors @ vector))
    threshold = snapshot.threshold(True)[0]
    if not verdict.get("unsure"):
        reason = "answered" if verdict["label"] == taught else "wrong"
    elif verdict.get("reason") == "out_of_scope":
        reason = "gate"
    elif sim < memory.radius:
        reason = "radius"
    elif memory.shift_limit is not None and not memory.passes(shift, corroborated):
        reason = "guard"
    else:
        reason = "p"
    return {
        "reason": reason,
        "label": verdict.get("label") or verdict.get("best"),
        "p": round(float(verdict["p"]), 3),
        "model": [model_label, round(float(model_p), 3)],
        "taught": taught,
        "similarity": round(sim, 3),
        "nearest": round(nearest, 3),
        "shift": round(float(shift), 2),
        "radius": round(float(memory.radius), 3),
        "limit": None if memory.shift_limit is None else round(float(memory.shift_limit), 2),
        "threshold": round(float(threshold), 3),
        "from_memory": bool(verdict.get("memory")),
        "text": text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="roi", choices=PROFILES)
    parser.add_argument("--data", type=Path, default=ROOT / "tools/data/proposals/heldout.jsonl")
    parser.add_argument("--paraphrases", type=Path, default=ROOT / "tools/data/proposals/paraphrases.jsonl")
    parser.add_argument("--teach", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-sticks-cache")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument(
        "--rewrites",
        action="store_true",
        help="read the minimal-pair rewrites instead (`answered`: answered with the original's taught label, wrong)",
    )
    args = parser.parse_args()

    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    taught, sets = draw(args.data, args.paraphrases, args.teach, args.seed)
    by_id = {r["id"]: r for r in taught}
    with tempfile.TemporaryDirectory() as data_dir:
        service = LatentService(Settings(data_dir=Path(data_dir), profile_cache_dir=args.cache))
        service.start()
        service.wait_ready(5)
        for r in taught:
            service.teach(labels={p: r[p] for p in PROFILES if r.get(p)}, text=r["text"])
        started = time.monotonic()
        service.wait_refitted(900)
        print(f"refits settled in {time.monotonic() - started:.0f} s", file=sys.stderr)
        out = []
        for item in sets["minimal pairs" if args.rewrites else "paraphrases"]:
            original = by_id[item["id"]]
            if not original.get(args.profile) or (args.rewrites and item.get(args.profile) == original[args.profile]):
                continue
            row = why(service, args.profile, item["text"], original["text"], original[args.profile])
            out.append({"id": item["id"], **row})
        service.close()

    what = "minimal-pair rewrites" if args.rewrites else "paraphrases"
    print(f"\n{args.data.name}, {args.profile}: {len(out)} {what} of taught texts (seed {args.seed})\n")
    print("| id | reason | verdict (p) | ensemble (p) | taught | sim to taught | shift | radius / limit | threshold |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | --- | ---: |")
    for r in out:
        print(
            f"| {r['id']} | {r['reason']} | {r['label']} ({r['p']}) | {r['model'][0]} ({r['model'][1]}) | "
            f"{r['taught']} | {r['similarity']} | {r['shift']} | {r['radius']} / {r['limit']} | {r['threshold']} |"
        )
    print("\n" + ", ".join(f"{k}: {v}" for k, v in Counter(r["reason"] for r in out).most_common()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
