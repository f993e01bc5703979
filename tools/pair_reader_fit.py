#!/usr/bin/env python3
"""Fit and check the pair reader's bound (`mcp_latent/judge/pair_reader.py`, `memory_wide.py`) on train pairs only.

Each pair is read the way a deployment meets it: the shipped profile is taught the first text (`with_exemplars`,
as `teach` does), then judges the second; pairs the memory already answers (or refuses by its cues) are not the
wide rule's. Train pairs (both readings of each): the written minimal pairs (`minimal_pairs.jsonl`) and paraphrase
pairs (`pair_paraphrases.jsonl`), and a second writer's paraphrases and minimal pairs of shipped exemplars
(`wide_paraphrases.jsonl`, `wide_minimal_pairs.jsonl`; a wide minimal pair whose label for a profile did not change
counts as a same-label pair there).

The bound is the widest decision change at which, of the pairs within [WIDE_RADIUS, 1) that reach the wide rule
with the ensemble's best label the taught one, at most 1 - target of the minimal pairs pass and the answers that
pass are right at least as often as the target, per profile; the served bound is the smaller of risk's and roi's.

    .venv/bin/python tools/pair_reader_fit.py [--cache DIR] [--wide 0.72]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tools/data/exemplars"
PROFILES = ("risk", "roi")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_pairs() -> list[tuple[str, str, str, str, str, str]]:
    """(profile, taught text, taught label, new text, new label, source), both readings of each pair."""
    out = []
    minimal = read_jsonl(DATA / "minimal_pairs.jsonl")
    by_id = {r["id"]: r for r in minimal}
    groups: dict[str, list[dict]] = {}
    for r in minimal:
        groups.setdefault(r["pair"], []).append(r)
    for a, b in groups.values():
        p = "risk" if a.get("risk") else "roi"
        out += [(p, a["text"], a[p], b["text"], b[p], "minimal"), (p, b["text"], b[p], a["text"], a[p], "minimal")]
    for r in read_jsonl(DATA / "pair_paraphrases.jsonl"):
        o = by_id[r["paraphrase_of"]]
        p = "risk" if r.get("risk") else "roi"
        out += [(p, o["text"], o[p], r["text"], r[p], "para"), (p, r["text"], r[p], o["text"], o[p], "para")]
    for r in read_jsonl(DATA / "wide_paraphrases.jsonl"):
        for p in PROFILES:
            out += [(p, r["paraphrase_of"], r[p], r["text"], r[p], "wide_para")]
            out += [(p, r["text"], r[p], r["paraphrase_of"], r[p], "wide_para")]
    for r in read_jsonl(DATA / "wide_minimal_pairs.jsonl"):
        for p in PROFILES:
            was, now = r["was"][p], r[p]
            out += [(p, r["minimal_pair_of"], was, r["text"], now, "wide_minimal")]
            out += [(p, r["text"], now, r["minimal_pair_of"], was, "wide_minimal")]
    return out


def fit_bound(change: np.ndarray, right: np.ndarray, target: float) -> tuple[float, int, int]:
    """(bound, answers passing, minimal pairs passing): the widest bound at which at most 1 - target of the
    minimal pairs pass and the passing answers are right at least as often as the target (-inf: none)."""
    n_minimal = int((~right).sum())
    best, taken, wrong = -np.inf, 0, 0
    for b in np.unique(change[np.isfinite(change)]):
        passes = change <= b
        bad = int((passes & ~right).sum())
        if bad <= (1.0 - target) * n_minimal + 1e-9 and right[passes].mean() >= target - 1e-12:
            best, taken, wrong = float(b), int(passes.sum()), bad
    return best, taken, wrong


def net_change(words, query: str, neighbour: str, label: int) -> float:
    """The alternative reading (`--score mass`): the query without all its unmatched words, and the neighbour without
    all of its, each only where it pushes away (the served reading sums each word's own push: `decision_change`)."""
    from mcp_latent.judge.memory_evidence import log_odds_shift
    from mcp_latent.judge.pair_reader import unmatched, without

    lone_q, lone_n = unmatched(query, neighbour)
    read = words.log_probs(
        [without(query, []), without(query, lone_q), without(neighbour, []), without(neighbour, lone_n)]
    )
    labels = np.array([label])
    away = float(log_odds_shift(read[0:1], read[1:2], labels)[0])  # the query's own words against the label
    lost = float(log_odds_shift(read[3:4], read[2:3], labels)[0])  # the neighbour's words for it, which it lacks
    return max(0.0, away) + max(0.0, lost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-pairs-cache")
    parser.add_argument("--wide", type=float, default=None, help="lowest similarity read (default: WIDE_RADIUS)")
    parser.add_argument("--show", type=int, default=8)
    parser.add_argument("--score", choices=("mass", "max", "sum"), default="sum", help="sum: the served reading")
    args = parser.parse_args()

    from mcp_latent.judge import memory_wide
    from mcp_latent.judge.memory_wide import WIDE_RADIUS
    from mcp_latent.judge.pair_reader import decision_change, unmatched, word_leans
    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    memory_wide.ENABLED = False  # the pairs the memory alone leaves are the wide rule's
    wide = WIDE_RADIUS if args.wide is None else args.wide
    rows = train_pairs()
    with tempfile.TemporaryDirectory() as tmp:
        service = LatentService(Settings(data_dir=Path(tmp), profile_cache_dir=args.cache))
        service.start(fit_profiles=False)
        service.wait_ready()
        fitted = {p: service.fitted_profile(p) for p in PROFILES}
        texts = sorted({t for r in rows for t in (r[1], r[3])})
        vec = dict(zip(texts, service.embedder.embed(texts), strict=True))
    bounds = {}
    for p in PROFILES:
        f = fitted[p]
        mine = [r for r in rows if r[0] == p]
        read = []
        for _, taught, t_label, new, n_label, source in mine:
            sim = float(vec[taught] @ vec[new])
            if sim < wide or sim >= 0.9999:
                continue
            label = f.labels.index(t_label)
            g = f.with_exemplars(vec[taught][None, :], np.array([label]), [taught])
            decisions, _, _ = g.judge(vec[new][None, :], 0, [new])
            recalled = decisions.recalled is not None and decisions.recalled[0] >= 0
            best = int(decisions.best[0])
            change = decision_change(g.words, new, taught, label)
            if args.score != "sum" and np.isfinite(change):
                leans = np.maximum(word_leans(g.words, new, taught, label), 0.0)
                change = (
                    float(leans.max(initial=0.0)) if args.score == "max" else net_change(g.words, new, taught, label)
                )
            read.append((source, sim, recalled, best == label, change, t_label == n_label, new, taught))
        right = np.array([r[5] for r in read])
        recalled = np.array([r[2] for r in read])
        gate = np.array([r[3] for r in read])
        change = np.array([r[4] for r in read])
        sims = np.array([r[1] for r in read])
        reach = ~recalled & gate
        print(
            f"\n{p}: {len(read)} readings in [{wide}, 1): {int(right.sum())} same-label, {int((~right).sum())} minimal"
        )
        print(f"  memory answers {int((recalled & right).sum())} same-label, {int((recalled & ~right).sum())} minimal")
        print(
            f"  reach the wide rule (not recalled, ensemble best = taught): {int((reach & right).sum())} same-label,"
            f" {int((reach & ~right).sum())} minimal (of {int((~recalled & ~right).sum())} minimal not recalled)"
        )
        target = f.spec.target_accuracy
        # the budget counts every minimal pair not recalled (the gate is part of the rule, not of the evidence)
        ch = np.where(reach, change, np.inf)
        n_min = int((~recalled & ~right).sum())
        best_b, taken_n, bad_n = -np.inf, 0, 0
        for b in np.unique(ch[np.isfinite(ch)]):
            passes = ch <= b
            bad = int((passes & ~right & ~recalled).sum())
            if bad <= (1.0 - target) * n_min + 1e-9 and right[passes].mean() >= target - 1e-12:
                best_b, taken_n, bad_n = float(b), int(passes.sum()), bad
        bounds[p] = best_b
        print(
            f"  bound {best_b:.3f}: answers {taken_n} ({bad_n} minimal) of {int((~recalled & right).sum())} "
            f"same-label not recalled; target {target}"
        )
        for lo, hi in ((wide, 0.8), (0.8, 0.85), (0.85, 1.0)):
            band = (sims >= lo) & (sims < hi) & ~recalled
            print(
                f"    sim [{lo:.2f},{hi:.2f}): not recalled {int((band & right).sum())} same / "
                f"{int((band & ~right).sum())} minimal; wide answers {int((band & (ch <= best_b) & right).sum())}"
                f" / {int((band & (ch <= best_b) & ~right).sum())}"
            )
        shown = 0
        for r, c in zip(read, ch, strict=True):
            if not r[5] and c <= best_b + 1 and shown < args.show:
                shown += 1
                lq, ln = unmatched(r[6], r[7])
                print(f"    minimal {r[0]} sim {r[1]:.3f} change {c:.2f}: +{lq} -{ln}")
        finite = change[reach & np.isfinite(change)]
        if len(finite):
            print(
                f"  change, same-label reach: {np.round(np.quantile(change[reach & right & np.isfinite(change)], [0.25, 0.5, 0.75]), 2)}"
                f"; minimal reach: {np.round(np.quantile(change[reach & ~right & np.isfinite(change)], [0.25, 0.5, 0.75]), 2) if (reach & ~right & np.isfinite(change)).any() else '-'}"
            )
    print(f"\nbounds {bounds}; served: the smaller, {min(bounds.values()):.3f}")


if __name__ == "__main__":
    main()
