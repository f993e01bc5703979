#!/usr/bin/env python3
"""Measure token-level views of a proposal against the whole-text (mean-pooled) vector the profiles use now, before
building any of them into the engine (issue 10: "the strongest risk cue should count, not the average").

    .venv/bin/python tools/eval_views.py                      # risk, roi, category; writes nothing
    .venv/bin/python tools/eval_views.py --out tools/results   # also views.md / views.json

Every view comes from the one forward pass that makes the sentence vector (the encoder's contextual token
embeddings, as sentence-transformers returns them with output_value="token_embeddings"):
- mean: the sentence vector the server uses (mean over all tokens, unit length): the baseline;
- mean+max: the sentence vector beside the element-wise max over the tokens (each half unit length);
- mean+clausemax: beside the element-wise max over clause vectors (tokens pooled within clauses split at
  punctuation and connectives such as "but", "without", "with", "no", "and then");
- clause-scored: the head fitted on whole-text vectors scores every clause too, and the text's logits are the
  whole text's plus the mean of its clauses' (weight 0.5; "the strongest cue counts" as max over clauses
  was measured too and was no better, see docs/benchmarks.md).
Each view is fitted and judged by the server's code (`FittedProfile.fit`: cross-validated head, kNN weight,
temperature and operating point; `FittedProfile.judge`: the decision rule), from the profile's exemplars only.
The figures that choose are the cross-validated ones; the held-out proposals (tools/data/proposals) are reported
beside them as a test set, never tuned on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.profiles.fitter import flatten
from mcp_latent.profiles.spec import read_profile_file

DATA = ROOT / "tools" / "data" / "proposals"
PROFILES = ("risk", "roi", "category")
VIEWS = ("mean", "mean+max", "mean+clausemax", "clause-scored")
PUNCTUATION = re.compile(r"[,.;:!?()\[\]\n]+|\s[-–—]+\s")
CONNECTIVES = re.compile(
    r"\b(but|without|with|no|not|unless|except|and then|then|so|because|after|before|while|although|though|"
    r"instead|skipping|skip|w/o|w/)\b",
    re.IGNORECASE,
)
CLAUSE_WEIGHT = 0.5


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def clause_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses: cut at punctuation and before connectives; empty pieces dropped."""
    cuts = {0, len(text)}
    for match in PUNCTUATION.finditer(text):
        cuts.update((match.start(), match.end()))
    cuts.update(match.start() for match in CONNECTIVES.finditer(text))
    ordered = sorted(cuts)
    return [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if text[a:b].strip(" ,.;:!?()-–—\n")]


class TokenViews:
    """Contextual token embeddings of the shipped model (torch), pooled into each view."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from mcp_latent.embedding.model_source import resolve_model_source

        source, _ = resolve_model_source("")
        self.model = SentenceTransformer(source, device="cpu", local_files_only=Path(source).exists())
        self.tokenizer = self.model.tokenizer
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def compute(self, texts: list[str]) -> None:
        todo = sorted({t for t in texts if t not in self.cache}, key=len)
        for start in tqdm(range(0, len(todo), 64), desc="token embeddings", unit="batch"):
            batch = todo[start : start + 64]
            tokens = self.model.encode(batch, output_value="token_embeddings", convert_to_numpy=False)
            for text, hidden in zip(batch, tokens, strict=True):
                hidden = hidden.float().numpy()
                offsets = self.tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=256)[
                    "offset_mapping"
                ]
                inner = np.array([b > a for a, b in offsets[: len(hidden)]], dtype=bool)
                groups = [
                    [i for i, (a, b) in enumerate(offsets[: len(hidden)]) if inner[i] and a >= lo and b <= hi]
                    for lo, hi in clause_spans(text)
                ]
                clauses = np.array([unit(hidden[g].mean(0)) for g in groups if g] or [unit(hidden.mean(0))])
                real = hidden[inner] if inner.any() else hidden
                self.cache[text] = (unit(hidden.mean(0)), unit(real.max(0)), clauses)

    def view(self, texts: list[str], name: str) -> np.ndarray:
        rows = []
        for text in texts:
            mean, maximum, clauses = self.cache[text]
            if name == "mean+max":
                rows.append(np.concatenate([mean, maximum]) / np.sqrt(2))
            elif name == "mean+clausemax":
                rows.append(np.concatenate([mean, unit(clauses.max(0))]) / np.sqrt(2))
            else:
                rows.append(mean)
        return np.ascontiguousarray(rows, dtype=np.float32)


def judged(
    fitted: FittedProfile, views: TokenViews, texts: list[str], name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answered, best label, probabilities) per text under one view, by the server's decision rule."""
    from mcp_latent.judge.decision import decide
    from mcp_latent.judge.ensemble import softmax

    vectors = views.view(texts, name)
    decisions, probs, _ = fitted.judge(vectors)  # views of the vector alone: the fit's vector-only point
    if name != "clause-scored":
        return decisions.answered, decisions.best, probs
    # The whole text's logits plus the mean of its clauses' logits under the same head, then the same rule.
    calibration = fitted.calibration.for_text(False)
    logits = np.log(np.maximum(probs, 1e-12)) * calibration.temperature
    for row, text in enumerate(texts):
        clause_logits = views.cache[text][2] @ fitted.weights + fitted.bias
        clause_logits -= clause_logits.max(axis=1, keepdims=True)
        logits[row] += CLAUSE_WEIGHT * clause_logits.mean(axis=0)
    probs = softmax(logits / calibration.temperature)
    nearest = decisions.nearest
    decisions = decide(probs, nearest, calibration.threshold, calibration.min_similarity, fitted.abstain)
    return decisions.answered, decisions.best, probs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    parser.add_argument("--out", type=Path, help="write views.md and views.json here")
    args = parser.parse_args()
    rows = read_jsonl(DATA / "heldout.jsonl")
    pairs = read_jsonl(DATA / "heldout_pairs.jsonl")
    by_id = {r["id"]: i for i, r in enumerate(rows)}
    held_texts = [r["text"].strip() for r in rows]
    views = TokenViews()
    results: list[dict] = []
    for profile in args.profiles:
        spec = read_profile_file(ROOT / "profiles" / f"{profile}.toml")
        texts, y = flatten(spec)
        views.compute(texts + held_texts)
        labels = [label.name for label in spec.labels]
        gold = np.array([labels.index(r[profile]) if r[profile] else -1 for r in rows])
        in_scope = gold >= 0
        for name in VIEWS:
            fit_view = "mean" if name == "clause-scored" else name
            fitted = FittedProfile.fit(spec, views.view(texts, fit_view), texts, y)
            answered, best, probs = judged(fitted, views, held_texts, name)
            right = best == gold
            cal = fitted.calibration
            result = {
                "profile": profile,
                "view": name,
                "cv_accuracy": cal.cv_accuracy,
                "cv_coverage": cal.cv_coverage,
                "cv_answered_accuracy": cal.cv_answered_accuracy,
                "heldout_coverage": float(answered[in_scope].mean()),
                "heldout_agreement": float(right[in_scope & answered].mean()) if (in_scope & answered).any() else None,
                "heldout_closed_set": float(right[in_scope].mean()),
                "off_topic_abstained": float((~answered[~in_scope]).mean()),
            }
            if fitted.values is not None:
                order = {"low": 0, "medium": 1, "high": 2}
                score = np.array([fitted.expected_score(p) for p in probs])
                ordered = [
                    (score[by_id[a]] - score[by_id[b]])
                    * (order[rows[by_id[a]][profile]] - order[rows[by_id[b]][profile]])
                    > 0
                    for a, b in (pair["ids"] for pair in pairs)
                    if rows[by_id[a]][profile] and rows[by_id[b]][profile] != rows[by_id[a]][profile]
                ]
                result["minimal_pairs_ordered"] = float(np.mean(ordered)) if ordered else None
            results.append(result)
            print(json.dumps(result), flush=True)
    table = markdown(results)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "views.md").write_text(table + "\n", encoding="utf-8")
        (args.out / "views.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def markdown(results: list[dict]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [
        "| profile | view | cv accuracy | cv coverage at target | cv answered | held-out coverage | held-out agreement "
        "| held-out closed-set | off-topic abstained | minimal pairs ordered |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['profile']} | {r['view']} | {pct(r['cv_accuracy'])} | {pct(r['cv_coverage'])} "
            f"| {pct(r['cv_answered_accuracy'])} | {pct(r['heldout_coverage'])} | {pct(r['heldout_agreement'])} "
            f"| {pct(r['heldout_closed_set'])} | {pct(r['off_topic_abstained'])} "
            f"| {pct(r.get('minimal_pairs_ordered'))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
