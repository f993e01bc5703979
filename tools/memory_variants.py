#!/usr/bin/env python3
"""The memory's variants compared on a profile's own evidence (its exemplars, and the written minimal pairs of
tools/data/exemplars/minimal_pairs.jsonl), never on held-out text: for each variant, the radius and limits it
fits and, of the ordered close pairs (at least SHIFT_BAND similar, each read by a fold model that did not count
the text asked about), the share of minimal pairs answered as copies (within the radius and through the guard:
what a minimal-pair rewrite of a taught text risks) and the share of same-label close pairs taken (what a
paraphrase of a taught text gains).

    .venv/bin/python tools/memory_variants.py roi risk category [--cache DIR]

Variants: `base` (FIT_VERSION 12: the log-odds guard alone), `amounts` (a pair stating other amounts is never a
copy, `judge/memory_numbers.py`), `corroborated` (a reading whose best label is the exemplar's may pass a wider,
fitted limit), `both` (FIT_VERSION 13), and each of them with the profile's written minimal pairs as the memory's
evidence (`+pairs`: `pair_examples`, the budget rule). Every variant is judged on the same pairs: the exemplars'
and the written pairs' (read as that variant reads).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def variant(amounts: bool, corroborate: bool):
    from mcp_latent.judge import memory, memory_evidence

    saved = memory_evidence.amounts_differ, memory.CORROBORATE
    if not amounts:
        memory_evidence.amounts_differ = lambda a, b: False
    memory.CORROBORATE = corroborate
    try:
        yield
    finally:
        memory_evidence.amounts_differ, memory.CORROBORATE = saved


def shares(mem, close) -> tuple[float, float, int, int]:
    """Of the close pairs `close` (one evidence for every variant), the share of minimal pairs and of same-label
    pairs that `mem` (its radius and guard) answers as copies."""
    sims, same, shift = close[:, 0], close[:, 1].astype(bool), close[:, 2]
    agrees = close[:, 3].astype(bool) if close.shape[1] > 3 else np.zeros(len(sims), dtype=bool)
    taken = (sims >= mem.radius) & mem.passes(shift, agrees)
    n_min, n_same = int((~same).sum()), int(same.sum())
    return taken[~same].mean() if n_min else 0.0, taken[same].mean() if n_same else 0.0, n_min, n_same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-pairs-cache")
    parser.add_argument("--pairs", type=Path, default=ROOT / "tools/data/exemplars/minimal_pairs.jsonl")
    args = parser.parse_args()

    from mcp_latent.judge.memory import Memory
    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    written = [json.loads(line) for line in args.pairs.read_text().splitlines() if line.strip()]
    print("| profile | variant | radius | limit | corroborated limit | minimal pairs answered as copies | "
          "same-label close pairs taken |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        service = LatentService(Settings(data_dir=Path(tmp), profile_cache_dir=args.cache))
        service.start(fit_profiles=False)
        service.wait_ready()
        for name in args.names:
            fitted = service.fitted_profile(name)
            vectors, y, texts = np.asarray(fitted.vectors, dtype=np.float32), fitted.y, list(fitted.texts)
            head = fitted.head()
            own = [r for r in written if r.get(name)]
            evidence = None
            if own:
                pair_texts = [r["text"] for r in own]
                pair_y = np.array([fitted.labels.index(r[name]) for r in own])
                evidence = (service.embedder.embed(pair_texts), pair_texts, pair_y)
            target = fitted.spec.target_accuracy
            for label, amounts, corroborate in (
                ("base", False, False),
                ("amounts", True, False),
                ("corroborated", False, True),
                ("both", True, True),
            ):
                with variant(amounts, corroborate):
                    judged = Memory.fit(vectors, y, target, head, texts, evidence)  # the written pairs as well
                for extra in (None, evidence) if evidence is not None else (None,):
                    with variant(amounts, corroborate):
                        mem = judged if extra is not None else Memory.fit(vectors, y, target, head, texts)
                    minimal, same, n_min, n_same = shares(mem, judged.close)
                    wider = mem.corroborated_limit if mem.corroborated_limit is not None else mem.shift_limit
                    print(
                        f"| {name} | {label}{' +pairs' if extra is not None else ''} | {mem.radius:.3f} | "
                        f"{mem.shift_limit:.2f} | {wider:.2f} | {100 * minimal:.1f}% of {n_min} | "
                        f"{100 * same:.1f}% of {n_same} |",
                        flush=True,
                    )
        service.close()


if __name__ == "__main__":
    main()
