"""The stream's ranking of verdicts: p adjusted by how many exemplars its best label has, with the weight of each
fitted on the stream's labelled verdicts (prequential: verdicts given before their text was taught), and the
stream's threshold lowered per label by it (`Ranking.lowered`, `service/stream_record.py`).

Why: a label the stream keeps escalating collects taught exemplars, and those are the confusable labels; at the
same p, a verdict for a label with many exemplars was right less often. On the taught verdicts of the recorded
runs (tools/results/stream_s3, HWU64 and BANKING77, seeds 0-2) log(exemplars) took a weight of -0.6 to -2.4 against
p's log-odds' 0.5-1.9 in every third of every run, and the same fit on every verdict (answered too, in hindsight)
agreed. As a ranking it is a small lever: the least escalation a cut on it allows at 97% (a hindsight bound) was
about a point below p's on most recorded runs, 10.7 on HWU64 seed 1, and above it on both seed-11 runs.
docs/learning.md "Ranked by the label's exemplars".

The model: q = sigmoid(a * logit(p) + b * (log n - ref)), n the best label's exemplars when the verdict was given,
ref the median log n of the recent verdicts (so b moves labels apart, not the whole stream), a in
[MIN_SHARPNESS, MAX_SHARPNESS], b shrunk towards 0 (a Gaussian prior, `RANK_SHRINKAGE`) so that a few checks on a
label do not move it. No intercept: the stream rule's threshold is what says where the stream answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcp_latent.judge.stream_rule import MAX_SHARPNESS, MIN_SHARPNESS, MIN_STREAM_CHECKS, STREAM_SHARPNESS_CHECKS

# The prior's precision on b (log-likelihood penalty RANK_SHRINKAGE * b^2). Replayed on ten recorded runs the
# lowered thresholds escalated within 0.4 points of each other at 0.3, 1 and 3, a little more at 10 (less lowering).
RANK_SHRINKAGE = 1.0
_A_GRID = np.linspace(MIN_SHARPNESS, MAX_SHARPNESS, 41)
_B_GRID = np.linspace(-3.0, 1.0, 81)


@dataclass(frozen=True)
class Ranking:
    """q's weights: `a` on p's log-odds, `b` on log(exemplars) - `ref`."""

    a: float
    b: float
    ref: float

    def log_odds(self, p: np.ndarray, log_n: np.ndarray) -> np.ndarray:
        return self.a * _log_odds(p) + self.b * (np.asarray(log_n, dtype=np.float64) - self.ref)

    def q(self, p: np.ndarray, log_n: np.ndarray) -> np.ndarray:
        """The ranked (and calibrated) probability that each verdict's best label is right."""
        return 1.0 / (1.0 + np.exp(-self.log_odds(p, log_n)))

    def lowered(self, threshold: float, log_n: np.ndarray) -> np.ndarray:
        """The threshold on p per label (its log exemplars `log_n`): `threshold` for a label at `ref` or one the
        ranking shows less reliable, lower for one it shows more reliable, by as much as q says is the same
        (log-odds b / a * (log n - ref) below). Never higher: a label's threshold raised above the stream's moved
        its escalations up into the overconfident top, whose taught checks then made the whole stream look less
        sure than it was (HWU64 seed 0, 4f69b64: the stream threshold rose 0.92 -> 0.98 and the last third
        escalated 46.3% at 99.1%)."""
        z = _log_odds(np.array([threshold]))[0] - self.b / self.a * (np.asarray(log_n, dtype=np.float64) - self.ref)
        return np.minimum(threshold, 1.0 / (1.0 + np.exp(-z)))


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


def fit_ranking(p: np.ndarray, log_n: np.ndarray, right: np.ndarray, recent_log_n: np.ndarray) -> Ranking | None:
    """The maximum a posteriori (a, b) on labelled verdicts, oldest first (p; log exemplars of the best label when
    given; 1/0 whether it was right): the last `STREAM_SHARPNESS_CHECKS` at p >= 0.5, as `stream.stream_sharpness`.
    `recent_log_n`: the recent verdicts' log exemplars (their median is `ref`). None with fewer than
    `MIN_STREAM_CHECKS` (whether p can be gone by at all is `stream.stream_sharpness`'s to say)."""
    p, log_n, right = (np.asarray(x, dtype=np.float64) for x in (p, log_n, right))
    where = p >= 0.5
    p, log_n, right = (x[where][-STREAM_SHARPNESS_CHECKS:] for x in (p, log_n, right))
    if len(p) < MIN_STREAM_CHECKS or not len(recent_log_n):
        return None
    ref = float(np.median(recent_log_n))
    z, d = _log_odds(p), log_n - ref
    # (A, B, n) log-odds of every grid pair: 41 x 81 x 500 at most, a few MB, once per restate
    logits = _A_GRID[:, None, None] * z[None, None, :] + _B_GRID[None, :, None] * d[None, None, :]
    log_likelihood = (right * logits - np.logaddexp(0.0, logits)).sum(axis=2) - RANK_SHRINKAGE * _B_GRID[None, :] ** 2
    i, j = np.unravel_index(int(np.argmax(log_likelihood)), log_likelihood.shape)
    return Ranking(float(_A_GRID[i]), float(_B_GRID[j]), ref)
