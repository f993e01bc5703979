"""Fine-tuning methods for tools/encoder_tuning_study.py: each takes the encoder it starts from and a profile's
exemplars (texts, label ids) and returns a tuned copy, trained for a bounded number of epochs and seconds on the CPU.

The losses are sentence-transformers' own, driven by a small loop here instead of its trainer (which needs the
`datasets` and `accelerate` packages and cannot stop at a time budget): every method sees each exemplar about once
per epoch, batches are drawn with a fixed seed, and a run stops at `max_seconds` (reported as truncated).

- `mnrl`: MultipleNegativesRankingLoss on (exemplar, another exemplar of its label) pairs, one pair per label in a
  batch, so the in-batch negatives are always other labels.
- `setfit`: SetFit's recipe for the body: CosineSimilarityLoss on pairs labelled 1 (same label) or 0 (other
  labels), `pairs` per exemplar (default 1: as many texts per epoch as `mnrl`), half of each.
- `softmax`: cross-entropy of a linear head over the (normalised) sentence embedding, trained jointly with the
  encoder (the head is thrown away: the profile fits its own).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

METHODS = ("mnrl", "setfit", "softmax")


@dataclass
class TuneResult:
    model: object  # the tuned SentenceTransformer
    seconds: float
    steps: int
    truncated: bool  # stopped at max_seconds before the epochs were done


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _mnrl_batches(y: np.ndarray, rng: np.random.Generator, size: int) -> list[list[tuple[int, int]]]:
    """(anchor, positive) index pairs, each exemplar an anchor once, no label twice in a batch; a batch left with
    one pair at the end is dropped (in-batch negatives: it has nothing to rank against)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(y):
        by_label[int(label)].append(i)
    pairs = []
    for members in by_label.values():
        if len(members) < 2:
            continue
        for i in members:
            j = i
            while j == i:
                j = members[int(rng.integers(len(members)))]
            pairs.append((i, j))
    order = [pairs[k] for k in rng.permutation(len(pairs))]
    batches: list[list[tuple[int, int]]] = []
    open_batches: list[tuple[set[int], list[tuple[int, int]]]] = []
    for pair in order:  # first open batch without this label
        label = int(y[pair[0]])
        for seen, batch in open_batches:
            if label not in seen:
                seen.add(label)
                batch.append(pair)
                if len(batch) == size:
                    open_batches.remove((seen, batch))
                    batches.append(batch)
                break
        else:
            open_batches.append(({label}, [pair]))
    batches += [batch for _, batch in open_batches if len(batch) > 1]
    return [batches[k] for k in rng.permutation(len(batches))]


def _setfit_pairs(y: np.ndarray, rng: np.random.Generator, per_exemplar: int) -> list[tuple[int, int, float]]:
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(y):
        by_label[int(label)].append(i)
    pairs = []
    for i, label in enumerate(y):
        same = by_label[int(label)]
        for k in range(per_exemplar):
            if (i + k) % 2 == 0 and len(same) > 1:  # half the pairs positive, also at one pair per exemplar
                j = i
                while j == i:
                    j = same[int(rng.integers(len(same)))]
                pairs.append((i, j, 1.0))
            else:
                j = int(rng.integers(len(y)))
                while int(y[j]) == int(label):
                    j = int(rng.integers(len(y)))
                pairs.append((i, j, 0.0))
    return [pairs[k] for k in rng.permutation(len(pairs))]


def tune(
    base,
    texts: list[str],
    y: np.ndarray,
    method: str,
    *,
    epochs: float = 1.0,
    lr: float = 2e-5,
    batch_size: int = 32,
    pairs: int = 1,
    max_seconds: float = 300.0,
    seed: int = 0,
) -> TuneResult:
    """A copy of `base` (a SentenceTransformer) tuned on (texts, y) with `method`, for `epochs` (fractions allowed)
    or until `max_seconds`."""
    import torch

    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers import losses

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(base)
    model.train()
    y = np.asarray(y)

    preprocess = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` is deprecated in 6.x

    def features(batch_texts: list[str]) -> dict:
        return preprocess(batch_texts)

    head = None
    if method == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model)
    elif method == "setfit":
        loss = losses.CosineSimilarityLoss(model)
        batch_size = 16  # SetFit's default
    else:
        labels = int(y.max()) + 1
        head = torch.nn.Linear(model.get_sentence_embedding_dimension(), labels)
        loss = None
    params = [{"params": model.parameters(), "lr": lr}]
    if head is not None:
        params.append({"params": head.parameters(), "lr": 1e-2})  # a fresh head must move faster than the body
    optimizer = torch.optim.AdamW(params)

    def epoch_batches() -> list:
        if method == "mnrl":
            return _mnrl_batches(y, rng, batch_size)
        if method == "setfit":
            return _batches(_setfit_pairs(y, rng, pairs), batch_size)
        return _batches([int(i) for i in rng.permutation(len(y))], batch_size)

    plan = [epoch_batches() for _ in range(max(1, int(np.ceil(epochs))))]
    steps = [batch for batches in plan for batch in batches][: max(1, int(round(epochs * len(plan[0]))))]
    warmup = max(1, len(steps) // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (len(steps) - s) / max(len(steps) - warmup, 1))
    )
    started, done, truncated = time.monotonic(), 0, False
    for batch in steps:
        if time.monotonic() - started > max_seconds:
            truncated = True
            break
        optimizer.zero_grad()
        if method == "mnrl":
            value = loss([features([texts[i] for i, _ in batch]), features([texts[j] for _, j in batch])], None)
        elif method == "setfit":
            a, b = features([texts[i] for i, _, _ in batch]), features([texts[j] for _, j, _ in batch])
            value = loss([a, b], torch.tensor([t for _, _, t in batch], dtype=torch.float32))
        else:
            embedded = model(features([texts[i] for i in batch]))["sentence_embedding"]
            logits = head(torch.nn.functional.normalize(embedded, dim=-1) * 10.0)
            value = torch.nn.functional.cross_entropy(logits, torch.tensor(y[batch], dtype=torch.long))
        value.backward()
        optimizer.step()
        schedule.step()
        done += 1
    model.eval()
    return TuneResult(model, time.monotonic() - started, done, truncated)


def encode(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit vectors of `texts`, as the server's torch backend computes them."""
    import torch

    with torch.inference_mode():
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def size_mib(model) -> float:
    """fp32 parameter bytes of a full copy (what a tuned snapshot adds on disk / in memory, before ONNX)."""
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20
