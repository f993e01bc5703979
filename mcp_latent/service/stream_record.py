"""A profile's record of its own stream: the verdicts it gave (each text once) and, once a text is taught, whether
the verdict had been right; from these every background refit sets the threshold it answers at
(`judge.threshold.online_threshold`). Split from `live_profile` (the fit lifecycle), which owns one of these.

Who owns what: `_lock` guards `_verdicts`, `checks` and `_learnt`, held only to record or mark one (any thread that
judges or teaches) or to copy them. `_operating` makes `operate` single-flight: it runs on the refit thread when a
refit ends and on a teaching thread between refits (`restate_due`); `stream_threshold` and `online` are written
under it and read by anyone (a reference read)."""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time

import numpy as np

from mcp_latent.judge import spot_checks
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.operating_point import MIN_THRESHOLD
from mcp_latent.judge.stream import MIN_SHARPNESS, exemplar_evidence, stream_sharpness, stream_threshold
from mcp_latent.judge.stream_rank import fit_ranking
from mcp_latent.judge.stream_rule import STREAM_RESTATE_EVERY
from mcp_latent.judge.threshold import online_threshold, operating_threshold


def _key(vector: np.ndarray) -> bytes:
    """A text's identity in the record: a digest of its vector (the same text always embeds to the same vector)."""
    return hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=16).digest()


class StreamRecord:
    """Recent verdicts and spot checks of one profile, and the online threshold they set."""

    def __init__(self, window: int):
        self.window = window
        self._lock = threading.Lock()
        self._operating = threading.Lock()
        self._learnt = 0  # recorded verdicts that learnt their outcome since the stream rule last ran
        # Per text (a digest of its vector: a handle judged twice counts once), oldest first: [p, best label,
        # whether the best label was right, log of the best label's exemplars then (NaN: not known)], the third None
        # until the text is taught (an escalation, or a spot check). A 16-byte digest, not the vector's 1,536 bytes:
        # a full window was 1.6 MB per profile, and the windows filling made most of a soak's memory growth after
        # its first minute (docs/load-and-faults.md).
        self._verdicts: dict[bytes, list] = {}
        # (p, best label right) of the verdict each taught text had just before it was taught: p's check.
        self.checks: collections.deque[tuple[float, bool]] = collections.deque(maxlen=window)
        # ...and the log of the best label's exemplars when it was given, where known (`stream_rank` fits on these).
        self.ranked_checks: collections.deque[tuple[float, bool, float]] = collections.deque(maxlen=window)
        # ...of those the verdicts that had been answered at the threshold: spot checks of the answers. Apart, as
        # a deployment teaches every escalation but only some answers: pooled, the escalations just below the
        # threshold (the hard texts) outweighed the answers (HWU64 stream: raised 0.92 -> 0.96 on them).
        self.spot: collections.deque[tuple[float, bool]] = collections.deque(maxlen=window)
        # Exemplars per label of the snapshot last operated on, plus those taught since (`stream_rank` ranks by them).
        self._counts: dict[str, int] = {}
        self.stream_threshold: float | None = None  # the threshold the stream's verdicts asked for last (or None)
        # The threshold answered at instead of the fit's, and why ("stream" / "spot checks"); None: the fit's own.
        self.online: tuple[float, str] | None = None
        # What the spot checks said at the last operate (`_note_spot_checks`; `latent://stats` shows it), or None.
        self.spot_reading: dict[str, object] | None = None
        # Counted ever (not windowed), for the trace: verdicts recorded and checks taught (under `_lock`).
        self._observed_total = 0
        self._taught_total = 0
        # `MCP_LATENT_STREAM_TRACE` (path, profile name), set by the owner of the profiles; None: no trace.
        self.trace: tuple[str, str] | None = None
        self._traced_evidence: object | None = None  # the calibration evidence traced last (head refits keep it)

    def observe(self, vector: np.ndarray, p: float, in_scope: bool, best: str | None = None) -> None:
        """Record a verdict (texts cut as out of scope are answered at no threshold: left out); `best`: its most
        probable label, also when unsure (a later teach of the text says whether it was right)."""
        if not self.window or not in_scope:
            return
        key = _key(vector)
        with self._lock:
            if key in self._verdicts:
                return
            count = self._counts.get(best) if best is not None else None
            self._verdicts[key] = [p, best, None, np.log(count) if count else np.nan]
            self._observed_total += 1
            if len(self._verdicts) > self.window:
                del self._verdicts[next(iter(self._verdicts))]  # dicts keep insertion order: oldest goes

    def verdicts(self) -> tuple[np.ndarray, np.ndarray]:
        """(p, right) of the recorded verdicts, oldest first; right is 1/0 for texts taught since (whether the
        verdict's best label was the one taught), NaN for the others."""
        return self._records()[:2]

    def _records(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p, right, log exemplars of the best label) of the recorded verdicts, one copy under the lock."""
        with self._lock:
            records = list(self._verdicts.values())
        p = np.array([r[0] for r in records], dtype=np.float64)
        right = np.array([np.nan if r[2] is None else float(r[2]) for r in records], dtype=np.float64)
        return p, right, np.array([r[3] for r in records], dtype=np.float64)

    def taught(self, vector: np.ndarray, label: str, check: tuple[float, str] | None, answered: bool = False) -> None:
        """A text was taught `label`: its recorded verdict (if any) now knows whether its best label was right, and
        `check` ((p, best label) of the verdict it had just before, None: none to count) joins p's checks, and the
        spot checks when that verdict was `answered` at the threshold."""
        with self._lock:
            if check is not None and self.checks.maxlen:
                self.checks.append((check[0], check[1] == label))
                self._taught_total += 1
                count = self._counts.get(check[1])
                if count:  # its label's exemplars before this teach: what the verdict was given with
                    self.ranked_checks.append((check[0], check[1] == label, float(np.log(count))))
                if answered:
                    self.spot.append((check[0], check[1] == label))
            record = self._verdicts.get(_key(vector))
            if record is not None and record[1] is not None and record[2] is None:
                record[2] = record[1] == label
                self._learnt += 1
            if label in self._counts:  # else not counted yet (`count_exemplars`): a count from 0 would be wrong
                self._counts[label] += 1

    def restate_due(self) -> bool:
        """Whether enough verdicts learnt their outcome since the stream rule last ran to run it again between
        refits (`STREAM_RESTATE_EVERY`)."""
        return self.window > 0 and self._learnt >= STREAM_RESTATE_EVERY

    def unlabel(self, vectors: list[np.ndarray]) -> None:
        """Texts whose teach was reverted: their recorded verdicts no longer know whether they were right (the
        stream threshold must not learn from a poisoned label)."""
        with self._lock:
            for vector in vectors:
                record = self._verdicts.get(_key(vector))
                if record is not None:
                    record[2] = None

    def count_exemplars(self, fitted: FittedProfile) -> np.ndarray:
        """Take each label's exemplars from `fitted` (the snapshot serving, or about to): verdicts record their best
        label's count from then on, and each teach adds one. Returns the (L,) counts."""
        counts = np.bincount(fitted.y, minlength=len(fitted.labels))
        with self._lock:
            self._counts = {label: int(c) for label, c in zip(fitted.labels, counts, strict=True)}
        return counts

    def _per_label(self, counts: np.ndarray, threshold: float, log_n: np.ndarray) -> np.ndarray | None:
        """(L,) thresholds on p: the stream's `threshold`, lowered for the labels the ranking by exemplars (`counts`,
        per label) shows more reliable than the median label (`stream_rank.Ranking.lowered`); None: too few ranked
        checks."""
        with self._lock:
            checks = np.array(self.ranked_checks, dtype=np.float64).reshape(-1, 3)
        ranking = fit_ranking(checks[:, 0], checks[:, 2], checks[:, 1], log_n[~np.isnan(log_n)])
        if ranking is None:
            return None
        return np.maximum(MIN_THRESHOLD, ranking.lowered(threshold, np.log(np.maximum(counts, 1))))

    def _checks(self, spot: bool = False) -> np.ndarray:
        with self._lock:
            return np.array(self.spot if spot else self.checks, dtype=np.float64).reshape(-1, 2)

    def operate(self, fitted: FittedProfile, target: float, served: float | None) -> FittedProfile:
        """`fitted` answering from the threshold the deployment's evidence asks for (`online_threshold`: the
        stream's verdicts may lower it, spot checks below the target raise it just to meet it); `served`: the
        threshold answered at until now. `fitted` may be a fresh fit or the snapshot serving now (between refits):
        either way the fit's own point is the calibration's, not a threshold set online before. (A fixed threshold
        in the profile file wins anyway.)"""
        with self._operating:
            counts = self.count_exemplars(fitted)
            with self._lock:
                self._learnt = 0
            p, right, log_n = self._records()
            checks = self._checks()
            # None: too few labelled verdicts to go by p; below MIN_SHARPNESS, p is too far off to go by
            sharpness = stream_sharpness(checks[:, 0], checks[:, 1])
            usable = sharpness is not None and sharpness >= MIN_SHARPNESS
            self.stream_threshold = stream_threshold(p, target, right, sharpness) if usable else None
            fit, source = operating_threshold(fitted.spec.threshold, fitted.calibration, fitted.words is not None)
            spot = self._checks(spot=True)
            prior = fitted.calibration.cv_answered_accuracy  # the fit's promise at its point: the checks' prior
            self.online = online_threshold(
                fit, target, self.stream_threshold, spot[:, 0], spot[:, 1], source != "default", served, prior
            )
            self._note_spot_checks(fit, target, spot, prior, source != "default")
            if self.trace is not None:
                self._write_trace(fitted, sharpness)
            if self.online is None:  # the fit's own point (a snapshot may carry one set online before: reset it)
                return fitted if fitted.online is None else fitted.with_threshold(fit, source)
            per_label = None
            if self.online[1] == "stream" and fitted.n:  # the stream's threshold, per label where the ranking says
                per_label = self._per_label(counts, self.online[0], log_n)
            return fitted.with_threshold(*self.online, per_label)

    def _write_trace(self, fitted: FittedProfile, sharpness: float | None) -> None:
        """One JSON line for this run of the rule (`MCP_LATENT_STREAM_TRACE`, under `_operating`): what it counted
        and decided, and the calibration's exemplar evidence at p >= 0.5 when the calibration is new. A failed write
        is dropped: a trace never stops the stream rule."""
        path, name = self.trace
        line: dict[str, object] = {"profile": name, "t": round(time.time(), 3)}
        with self._lock:
            line["observed"], line["taught"] = self._observed_total, self._taught_total
        line["sharpness"] = sharpness
        line["stream_threshold"] = self.stream_threshold
        line["online"] = self.online
        if fitted.calibration.evidence is not self._traced_evidence:
            self._traced_evidence = fitted.calibration.evidence
            evidence = exemplar_evidence(fitted.calibration)
            if evidence is not None:
                top = evidence[0] >= MIN_THRESHOLD
                line["exemplar_p"] = [round(float(x), 4) for x in evidence[0][top]]
                line["exemplar_right"] = [int(x) for x in evidence[1][top]]
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
        except OSError:
            pass

    def _note_spot_checks(self, fit: float, target: float, spot: np.ndarray, prior: float | None, fitted: bool) -> None:
        """Keep what the spot checks said at this operate for `latent://stats`, and when the threshold they set
        first moved to where it is (under `_operating`)."""
        if not fitted:
            self.spot_reading = None
            return
        promise = spot_checks.prior_agreement(prior, target)
        reading = spot_checks.read(fit, target, spot[:, 0], spot[:, 1], promise)
        moved = self.online[0] if self.online is not None and self.online[1] == "spot checks" else None
        note: dict[str, object] = {
            "checks": len(spot),
            "at_fit": {
                "threshold": round(fit, 3),
                "checked": reading.checked,
                "agreement": None if reading.agreement is None else round(reading.agreement, 3),
                "estimate": round(reading.estimate, 3),
                "prior": round(promise, 3),
                "p_below": round(reading.below, 3),
            },
            "why": spot_checks.describe(reading, target, moved),
        }
        if moved is not None:
            before = (self.spot_reading or {}).get("moved")
            same = isinstance(before, dict) and before.get("to") == round(moved, 3)
            note["moved"] = (
                before
                if same
                else {
                    "from": round(fit, 3),
                    "to": round(moved, 3),
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "after_checks": len(spot),
                }
            )
        self.spot_reading = note

    def summary(self, snapshot: FittedProfile | None, target: float) -> dict[str, object]:
        """What the taught texts said about the answers (for `latent://stats`): the threshold answered at with its
        source, and how many verdicts answered at it were taught after, and how often they agreed."""
        checks = self._checks(spot=True)
        out: dict[str, object] = {"target": target}
        if snapshot is not None:
            threshold, source = snapshot.threshold(True)
            out["threshold"] = [round(threshold, 3), source]
            answered = checks[:, 0] >= threshold
            if answered.any():
                out["checked"] = int(np.sum(answered))
                out["checked_agreement"] = round(float(checks[answered, 1].mean()), 3)
        if self.spot_reading is not None:  # what the checks said at the fit's point, and when they moved it
            out["spot_checks"] = self.spot_reading
        return out
