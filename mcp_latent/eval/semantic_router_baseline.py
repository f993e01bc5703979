"""semantic-router as a baseline in the evaluation harness, on the very embeddings our profile uses.

Optional: `pip install 'mcp-latent[baselines]'` installs semantic-router 1.1.1; without it the harness skips
this baseline. Its encoder here only looks vectors up (every text was embedded once, by our model), so the
comparison is between decision rules, not encoders. Set up the way its documentation recommends: routes
from the profile's exemplars, Platt calibration fitted on held-out labelled queries (a stratified 20% of the
exemplars, left out of the index while fitting), then the calibrated router over all exemplars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONFIDENCE = 0.8  # the anchor setting
CALIBRATION_SHARE = 0.2


def available() -> bool:
    try:
        import semantic_router  # noqa: F401
    except ImportError:
        return False
    return True


def _calibration_split(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Boolean mask: a stratified share of each label's exemplars (at least one, never all) for calibration."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        if len(members) < 2:
            continue
        take = max(1, round(CALIBRATION_SHARE * len(members)))
        held[rng.choice(members, size=min(take, len(members) - 1), replace=False)] = True
    return held


def run(
    label_names: list[str],
    exemplar_texts: list[str],
    exemplar_y: np.ndarray,
    exemplar_vectors: np.ndarray,
    query_texts: list[str],
    query_vectors: np.ndarray,
) -> dict[str, Any]:
    """Route every query; returns the predicted label index (-1: none) and calibrated confidence per query."""
    from semantic_router import IndexedRouter, Route
    from semantic_router.encoders.base import DenseEncoder

    lookup = {text: vector for text, vector in zip(exemplar_texts, exemplar_vectors, strict=True)}
    lookup.update(zip(query_texts, query_vectors, strict=True))

    class Precomputed(DenseEncoder):
        """Hands semantic-router the vectors our model already made."""

        def __call__(self, docs: list[Any]) -> list[list[float]]:
            return [lookup[str(doc)].tolist() for doc in docs]

        async def acall(self, docs: list[Any]) -> list[list[float]]:
            return self(docs)

    def routes(mask: np.ndarray) -> list[Any]:
        texts = np.array(exemplar_texts, dtype=object)
        return [
            Route(name=name, utterances=list(texts[mask & (exemplar_y == i)]))
            for i, name in enumerate(label_names)
            if (mask & (exemplar_y == i)).any()
        ]

    encoder = Precomputed(name="mcp-latent-precomputed")
    held = _calibration_split(exemplar_y)
    calibrating = IndexedRouter(encoder=encoder, routes=routes(~held))
    calibrating.fit(
        [exemplar_texts[i] for i in np.nonzero(held)[0]], [label_names[exemplar_y[i]] for i in np.nonzero(held)[0]]
    )
    router = IndexedRouter(encoder=encoder, routes=routes(np.ones(len(exemplar_y), dtype=bool)))
    router.calibrator = calibrating.calibrator
    index = {name: i for i, name in enumerate(label_names)}
    predicted = np.full(len(query_texts), -1)
    confidence = np.zeros(len(query_texts))
    for row, text in enumerate(query_texts):
        choice = router(text, threshold=0.0)  # the top route whatever its confidence; thresholds applied later
        if choice.name is not None:
            predicted[row], confidence[row] = index[choice.name], choice.confidence
    return {"predicted": predicted, "confidence": confidence}
