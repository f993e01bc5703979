#!/usr/bin/env python3
"""How well a reader of what differs tells minimal pairs from paraphrases, on train data only: the written minimal
pairs (`tools/data/exemplars/minimal_pairs.jsonl`, the same proposal with and without a safeguard / cost /
payoff, labelled apart) against the written paraphrase pairs (`pair_paraphrases.jsonl`, same label), each read
both ways (either text may be the taught one). Share called different: minimal pairs (should be high) and
paraphrase pairs (should be low), for

- the cue reader `mcp_latent/judge/clause_diff.py` (negation cues, figures): what the server runs, and the fit of
  its figure ratio (`FIGURE_RATIO`: amounts changed by magnitude, against figures as written);
- an embedding clause diff (the alternative it was chosen over): clauses of either text with no match at least
  `match` similar in the other, read by the profile's head and words, decisive when one leans away from the
  neighbour's label by more than `lean` (log-odds; a grid of both), alone and together with the cues.

    .venv/bin/python tools/clause_pairs.py [--cache DIR] [--show 6]

Reads with the shipped profiles' heads as the server fits them (LatentService; `--cache` keeps the fits).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tools/data/exemplars"
MATCHES = (0.70, 0.75, 0.80, 0.85, 0.88)
BUDGETS = (0.025, 0.05, 0.10)  # paraphrase shares at which the embedding diff's lean is read off


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pairs() -> list[tuple[str, str, str, str, str, bool]]:
    """(profile, query text, neighbour text, neighbour label, id, minimal pair?), both readings of each pair."""
    minimal = read_jsonl(DATA / "minimal_pairs.jsonl")
    by_id = {r["id"]: r for r in minimal}
    groups: dict[str, list[dict]] = {}
    for r in minimal:
        groups.setdefault(r["pair"], []).append(r)
    out = []
    for pair, (a, b) in groups.items():
        profile = "risk" if a.get("risk") else "roi"
        if a[profile] != b[profile]:
            out += [(profile, a["text"], b["text"], b[profile], pair, True)]
            out += [(profile, b["text"], a["text"], a[profile], pair, True)]
    for p in read_jsonl(DATA / "pair_paraphrases.jsonl"):
        original = by_id[p["paraphrase_of"]]
        profile = "risk" if p.get("risk") else "roi"
        out += [(profile, p["text"], original["text"], original[profile], p["id"], False)]
        out += [(profile, original["text"], p["text"], original[profile], p["id"], False)]
    return out


def label_log_odds(log_probs: np.ndarray, label: int) -> np.ndarray:
    others = np.delete(log_probs, label, axis=1)
    top = others.max(axis=1, keepdims=True)
    return log_probs[:, label] - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))


def shares(flags: np.ndarray, minimal: np.ndarray, profiles: np.ndarray) -> str:
    risk, roi = flags[minimal & (profiles == "risk")].mean(), flags[minimal & (profiles == "roi")].mean()
    return (
        f"minimal pairs {100 * flags[minimal].mean():.1f}% (risk {100 * risk:.1f}%, roi {100 * roi:.1f}%), "
        f"paraphrases {100 * flags[~minimal].mean():.1f}%"
    )


def print_figure_ratio(rows: list, minimal: np.ndarray, profiles: np.ndarray) -> float:
    """The figure cue's ratio (`clause_diff.FIGURE_RATIO`), fitted on these pairs: each pair's largest change of an
    amount both texts state (`memory_numbers.mismatch`: a dropped amount is no change), and the ratio midway, in log
    terms, between the largest change of a paraphrase pair and the smallest larger change of a minimal pair (the
    widest margin on both sides). Prints the figure cue as written (the fifth pass) beside it."""
    from mcp_latent.judge.clause_diff import FIGURE_RATIO, figures
    from mcp_latent.judge.memory_numbers import amounts, mismatch

    change = np.array([mismatch(amounts(r[1]), amounts(r[2])) for r in rows])
    largest_paraphrase = float(change[~minimal].max())
    above = change[minimal & (change > largest_paraphrase + 1e-9)]
    fitted = 10 ** ((largest_paraphrase + float(above.min())) / 2)
    print(
        f"\nfigure ratio: paraphrase pairs change an amount by at most {10**largest_paraphrase:.2f}x, minimal pairs "
        f"by {10 ** float(above.min()):.2f}x or more where they change one ({len(above)} of {int(minimal.sum())} "
        f"readings); fitted ratio {fitted:.3f} (served: FIGURE_RATIO = {FIGURE_RATIO})"
    )
    written = np.array([figures(r[1]) != figures(r[2]) for r in rows])
    print(f"  figures as written differ (the fifth pass): {shares(written, minimal, profiles)}")
    for ratio in sorted({round(fitted, 2), FIGURE_RATIO, 3.0}):
        print(
            f"  an amount changed by more than {ratio:.2f}x: {shares(change > np.log10(ratio) + 1e-9, minimal, profiles)}"
        )
    return fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-pairs-cache")
    parser.add_argument("--show", type=int, default=6, help="misread pairs listed with their differing clauses")
    args = parser.parse_args()

    from mcp_latent.judge.clause_diff import clauses, differences
    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    rows = pairs()
    minimal = np.array([r[5] for r in rows])
    profiles = np.array([r[0] for r in rows])
    cues = np.array([bool(differences(r[1], r[2])) for r in rows])
    print(f"{int(minimal.sum())} minimal-pair readings, {int((~minimal).sum())} paraphrase readings (train data)")
    print(f"\ncue reader (judge/clause_diff.py): {shares(cues, minimal, profiles)}")
    shown = 0
    for r, flag in zip(rows, cues, strict=True):
        if r[5] != flag and shown < args.show:
            shown += 1
            kind = "minimal pair not called different" if r[5] else "paraphrase called different"
            print(f"  {kind} ({r[4]}): {differences(r[1], r[2]) or r[1][:110]!r}")

    print_figure_ratio(rows, minimal, profiles)

    from mcp_latent.judge.taught_diff import LEAN, words_lean

    with tempfile.TemporaryDirectory() as tmp:
        service = LatentService(Settings(data_dir=Path(tmp), profile_cache_dir=args.cache))
        service.start(fit_profiles=False)
        service.wait_ready()
        heads = {name: service.fitted_profile(name) for name in sorted(set(profiles))}
        pieces = sorted({c for r in rows for text in r[1:3] for c in clauses(text)})
        vectors = dict(zip(pieces, service.embedder.embed(pieces), strict=True))
        readings = []  # per reading: each clause's best match in the other text and its lean away from the label
        for profile, query, neighbour, label, _, _ in rows:
            fitted = heads[profile]
            head, label_id = fitted.head(), fitted.labels.index(label)
            cq, cn = clauses(query), clauses(neighbour)
            vq, vn = np.stack([vectors[c] for c in cq]), np.stack([vectors[c] for c in cn])
            sims = vq @ vn.T
            words = head.reads_words
            lean_q = -label_log_odds(head.log_probs(vq, cq if words else None), label_id)
            lean_n = label_log_odds(head.log_probs(vn, cn if words else None), label_id)
            readings.append((sims.max(axis=1), lean_q, sims.max(axis=0), lean_n))
        # which way the cues push, read by the profile's words expert (`taught_diff.words_lean`)
        leans = np.array(
            [
                words_lean(heads[r[0]].words, r[1], r[2], heads[r[0]].labels.index(r[3])) if flag else -np.inf
                for r, flag in zip(rows, cues, strict=True)
            ]
        )
        service.close()

    paraphrase_leans = leans[~minimal & cues]
    fitted = float(paraphrase_leans.max()) if len(paraphrase_leans) else 0.0
    print(f"\ncues pushing away from the label (words lean); flagged paraphrase leans {np.round(paraphrase_leans, 3)}:")
    for lean in sorted({0.0, fitted, LEAN}):
        print(f"  lean > {lean:.3f}: {shares(leans > lean, minimal, profiles)}")
    print(f"  the largest lean of a flagged paraphrase pair: {fitted:.3f} (served: LEAN = {LEAN})")

    print(
        "\nembedding clause diff (unmatched clause leaning away from the label), lean read off at a paraphrase share:"
    )
    for match in MATCHES:
        push = np.array(
            [
                max([-np.inf, *lq[bq < match], *ln[bn < match]])  # the strongest lean of an unmatched clause
                for bq, lq, bn, ln in readings
            ]
        )
        for budget in BUDGETS:
            lean = float(np.quantile(push[~minimal], 1 - budget)) if np.isfinite(push[~minimal]).any() else 0.0
            alone = push > lean
            print(
                f"  match {match:.2f}, lean {lean:+.2f}: alone {shares(alone, minimal, profiles)}; "
                f"with the cues {shares(alone | cues, minimal, profiles)}"
            )


if __name__ == "__main__":
    main()
