"""A fitted profile judging texts by their vectors (and words): neighbours, linear head and words expert ->
per-label probabilities -> a calibrated verdict, or an honest "unsure". How the decision's parameters are chosen
lives in `calibration`; the arithmetic in `ensemble`.

A `FittedProfile` is an immutable snapshot: readers judge with it from any thread without a lock, and learning
makes a new snapshot (`with_exemplars`, microseconds to milliseconds) that the profile's owner swaps in
(`live_profile.LiveProfile`). Neighbours are exact (one matrix-vector product over the exemplars: about a
millisecond for 10,000 of them), so a taught exemplar counts from the next call without an index rebuild, and
the server judges exactly as the evaluation harness measures.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mcp_latent.atomic_files import replacing
from mcp_latent.judge import memory_wide, neighbour_search, taught_diff
from mcp_latent.judge.decision import OUT_OF_SCOPE, Decisions, best_answer, decide
from mcp_latent.judge.ensemble import KNN_K, ensemble_logits, exact_neighbours, fit_head, knn_votes, softmax
from mcp_latent.judge.exemplar_rows import ExemplarRows
from mcp_latent.judge.grouping import spec_groups
from mcp_latent.judge.memory import Evidence, Memory
from mcp_latent.judge.memory_evidence import Head, PairReader
from mcp_latent.judge.scope_gate import ScopeGate, gated
from mcp_latent.judge.selection import Calibration, fit_calibration
from mcp_latent.judge.threshold import operating_threshold
from mcp_latent.judge.verdict import Verdict
from mcp_latent.judge.words import WordsModel
from mcp_latent.profiles.spec import ProfileSpec

# A taught exemplar nudges the head at once (before the background refit): gradient steps of the softmax loss on
# that exemplar alone, until the head ranks its label first. The step moves logits only along the exemplar's
# direction, so texts far from it are untouched; the background refit then replaces the nudged head.
ONLINE_STEP = 1.0
ONLINE_MAX_STEPS = 25
# Neighbours fetched at least, so that of several identical exemplars (a text taught again with another label)
# the latest is among them: memory answers with it.
MEMORY_TIES = 4


class FittedProfile:
    """A profile ready to judge vectors: exemplars (exact neighbours), linear head, words expert (when the
    calibration gives it weight) and calibration. Immutable.

    Texts are optional everywhere: a verdict without its text (a handle stored with MCP_LATENT_STORE_TEXT off)
    is judged from the vector alone, at the operating point chosen for that (`Calibration.for_text`)."""

    def __init__(
        self,
        spec: ProfileSpec,
        vectors: np.ndarray | ExemplarRows,
        y: np.ndarray | None,
        texts: list[str] | None,
        weights: np.ndarray,
        bias: np.ndarray,
        calibration: Calibration,
        n: int | None = None,
        provisional: bool = False,
        words: WordsModel | None = None,
        memory: Memory | None = None,
        online: tuple[float, str] | None = None,
        shipped: int | None = None,
        gate: ScopeGate | None = None,
        label_thresholds: np.ndarray | None = None,
    ):
        self.spec = spec
        self.labels = [label.name for label in spec.labels]
        # Abstain labels (None when the profile has none) are learnt like the others but never answered with.
        abstain = np.array([label.abstain for label in spec.labels], dtype=bool)
        self.abstain = abstain if abstain.any() else None
        self.values = (
            np.array([label.value or 0.0 for label in spec.labels], dtype=np.float32) if spec.ordinal else None
        )
        self._rows = vectors if isinstance(vectors, ExemplarRows) else ExemplarRows(vectors, y, texts or [])
        self.n = self._rows.used if n is None else n
        self.weights = weights
        self.bias = bias
        if calibration.words_weight and words is None:  # no words to judge with: the vector-only point
            calibration = calibration.for_text(False)
            if calibration.words_weight:
                calibration = replace(calibration, words_weight=0.0)
        self.calibration = calibration
        self.words = words if calibration.words_weight else None
        # True when the head or calibration has not yet been refitted on every exemplar (right after `teach`):
        # good to answer with; the owner's background refit replaces it.
        self.provisional = provisional
        # Answers from memory for (near) copies of exemplars (`memory.Memory`; None: none, e.g. a cold start).
        self.memory = memory
        # The threshold the live profile measured on its stream and spot checks (`threshold.online_threshold`).
        self.online = online
        # (L,) thresholds on p per best label that the stream set with it (`stream_rank`: labels the stream shows
        # more reliable answer from a lower p); they apply while the online threshold is the stream's.
        self.label_thresholds = label_thresholds
        # Rows below this are the profile file's exemplars, the rest taught (None: not known, e.g. the harness).
        self.shipped = shipped
        self.memory_compared_at_load = False  # `load` compared a stored fit's exemplars (the cache may keep that)
        # The scope gate (`scope_gate`; None: the profile has none): abstains on texts it calls out of scope.
        gate = gate if self.abstain is not None and spec.scope_gate is not None else None
        self.gate = None if gate is None else gate.sharing_idf(self.words)  # one reading of a text serves both

    @property
    def vectors(self) -> np.ndarray:
        return self._rows.vectors[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._rows.y[: self.n]

    @property
    def texts(self) -> list[str]:
        return self._rows.texts[: self.n]

    @classmethod
    def fit(
        cls,
        spec: ProfileSpec,
        vectors: np.ndarray,
        texts: list[str],
        y: np.ndarray,
        reuse_calibration: Calibration | None = None,
        warm_start: FittedProfile | None = None,
        evidence: Evidence | None = None,
    ) -> FittedProfile:
        """Cross-validate and fit; with `reuse_calibration`, fit only the head (seconds, not minutes for a large
        profile; warm-started from `warm_start`'s head when given) and mark the result provisional. `evidence`:
        the file's `pair_examples` (vectors, texts, label ids), which only the memory is fitted on."""
        n_labels = len(spec.labels)
        # Fitting is hundreds of small BLAS calls: with one BLAS thread a 950-exemplar, 6-label fit took 11 s
        # instead of 130 s on a busy 2-core machine, where idle BLAS workers spin waiting for a core.
        with threadpool_limits(limits=1, user_api="blas"):
            calibration = reuse_calibration or fit_calibration(vectors, y, n_labels, spec, texts)
            start = (warm_start.weights, warm_start.bias) if warm_start is not None else None
            weights, bias = fit_head(vectors, y, n_labels, calibration.c, start)
        words = None
        head_refit = reuse_calibration is not None and warm_start is not None and warm_start.n == len(y)
        if calibration.words_weight and head_refit and warm_start.words is not None:
            words = warm_start.words  # the snapshot's words already count every exemplar (its taught ones added)
        elif calibration.words_weight and len(texts) == len(y):
            words = WordsModel.fit(texts, y, n_labels)
        # (no texts to count words from: the constructor falls back to the vector-only point)
        provisional = reuse_calibration is not None
        if head_refit and warm_start.memory is not None:
            memory = warm_start.memory  # grown with every taught row; the agreement evidence waits for a recalibration
        else:
            vectors32, labels = np.asarray(vectors, dtype=np.float32), np.asarray(y)
            head = _head(calibration, weights, bias, words)
            memory = Memory.fit(vectors32, labels, spec.target_accuracy, head, texts, evidence)
        gate = None
        if reuse_calibration is not None and warm_start is not None and warm_start.gate is not None:
            gate = warm_start.gate  # a head-only refit keeps the gate (the next full fit refits it)
        elif spec.scope_gate is not None:
            abstain = np.array([label.abstain for label in spec.labels], dtype=bool)
            in_scope = ~abstain[np.asarray(y)]
            with threadpool_limits(limits=1, user_api="blas"):
                gate = ScopeGate.fit(vectors, in_scope, spec.scope_gate, texts, spec_groups(spec, texts, len(y)))
        arrays = (vectors, y, texts, weights, bias, calibration)
        return cls(spec, *arrays, provisional=provisional, words=words, memory=memory, gate=gate)

    @classmethod
    def empty(cls, spec: ProfileSpec, dim: int) -> FittedProfile:
        """A profile with no exemplars yet (cold start): it abstains on everything until taught."""
        n_labels = len(spec.labels)
        weights = np.zeros((dim, n_labels), dtype=np.float32)
        calibration = Calibration(10.0, 0.0, 1.0, 1.0, -1.0, None, None, None)
        return cls(
            spec,
            np.zeros((0, dim), np.float32),
            np.zeros(0, np.int64),
            [],
            weights,
            np.zeros(n_labels, np.float32),
            calibration,
            provisional=True,
        )

    def with_threshold(
        self, threshold: float, source: str = "stream", label_thresholds: np.ndarray | None = None
    ) -> FittedProfile:
        """A snapshot answering from another threshold, measured online (`threshold.online_threshold`; `source`
        says from what), with the same exemplars and head (nothing is copied). The calibration keeps the fit's own
        point: the next refit starts from it, not from what the stream measured on this one."""
        calibration = self.calibration
        return FittedProfile(
            self.spec,
            self._rows,
            None,
            None,
            self.weights,
            self.bias,
            calibration,
            self.n,
            self.provisional,
            self.words,
            self.memory,
            (threshold, source),
            self.shipped,
            self.gate,
            label_thresholds if source == "stream" else None,
        )

    def threshold(self, has_text: bool) -> tuple[float, str]:
        """(threshold, why) a verdict with (or without) its words is answered at: `threshold.operating_threshold`."""
        return operating_threshold(
            self.spec.threshold, self.calibration, has_text and self.words is not None, self.online
        )

    def _thresholds(self, has_text: bool) -> tuple[float | np.ndarray, str]:
        """`threshold`, or the stream's per-label thresholds ((L,) array) where they apply."""
        threshold, source = self.threshold(has_text)
        if self.label_thresholds is not None and source == "stream":
            return self.label_thresholds, source
        return threshold, source

    def with_exemplars(self, vectors: np.ndarray, label_ids: np.ndarray, texts: list[str]) -> FittedProfile:
        """A new snapshot that knows these exemplars too: neighbours at once, the head nudged towards them."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self._rows.vectors.shape[1])
        label_ids = np.asarray(label_ids, dtype=np.int64)
        weights, bias = self.weights.copy(), self.bias
        for x, label in zip(vectors, label_ids, strict=True):
            for _ in range(ONLINE_MAX_STEPS):
                probs = softmax(x @ weights + bias)
                if int(probs.argmax()) == label:
                    break
                gradient = -probs
                gradient[label] += 1.0
                weights += ONLINE_STEP * np.outer(x, gradient).astype(np.float32)
        memory = None
        words = None if self.words is None else self.words.with_texts(texts, label_ids)
        if self.memory is not None:
            # the guard reads a new pair as the next snapshot will (its head and words know the new rows)
            head = _head(self.calibration, weights, bias, words)
            both = np.concatenate([self.vectors, vectors]), [*self.texts, *texts], np.concatenate([self.y, label_ids])
            memory = self.memory.with_rows(self.vectors, self.y, vectors, label_ids, PairReader(head, *both).shifts)
        elif self.n == 0:  # a cold start's first teach: its exemplars are answered from memory from now on
            memory = Memory.fit(vectors, label_ids, self.spec.target_accuracy)
        rows = self._rows.appended(self.n, vectors, label_ids, list(texts))
        n = self.n + len(vectors)
        return FittedProfile(
            self.spec,
            rows,
            None,
            None,
            weights,
            bias,
            self.calibration,
            n,
            True,
            words,
            memory,
            self.online,
            self.shipped,
            self.gate,
            self.label_thresholds,
        )

    def _calibration(self, texts: list[str] | None) -> Calibration:
        """The calibration for this batch: the words expert's when every text is there, else the vector-only one."""
        return self.calibration.for_text(texts is not None and self.words is not None)

    def probabilities(
        self,
        vectors: np.ndarray,
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
        texts: list[str] | None = None,
        words: np.ndarray | None = None,
    ) -> np.ndarray:
        """Calibrated per-label probabilities for a batch of vectors (neighbours: exact search when not given;
        texts: theirs, for the words expert, None judges from the vectors alone; words: its reading, if done)."""
        calibration = self._calibration(texts)
        logits = vectors @ self.weights + self.bias
        votes = None
        if calibration.knn_weight:
            ids, sims = neighbours if neighbours is not None else exact_neighbours(vectors, self.vectors, KNN_K)
            votes = knn_votes(sims, self.y[ids], len(self.labels))
        if words is None and calibration.words_weight:
            words = self.words.log_probs(texts)
        logits = ensemble_logits(logits, votes, calibration.knn_weight, words, calibration.words_weight)
        return softmax(logits / calibration.temperature)

    def neighbours(self, vectors: np.ndarray, k: int, sims: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact nearest `k` exemplars of each vector: (ids, cosine similarities), each (n, <= k), best first
        (sims: one vector's (n,) similarities to every exemplar, when a product shared by profiles gave them)."""
        return neighbour_search.nearest(np.atleast_2d(vectors), self.vectors, k, sims, self._rows)

    @functools.cached_property
    def reads_taught_facts(self) -> bool:
        """Whether a text's decisive difference from its taught neighbour counts here (`taught_diff.reads_facts`):
        the snapshot's memory decides it, once per snapshot, not per verdict."""
        return taught_diff.reads_facts(self.memory)

    @functools.cached_property
    def exemplar_in_scope(self) -> np.ndarray | None:
        """(n,) bool: whether each exemplar belongs to an answer label (None: no abstain labels); read by the scope
        gate on every verdict, so computed once per snapshot (immutable: its rows below n never change)."""
        return None if self.abstain is None else ~self.abstain[self.y]

    def judge(
        self,
        vectors: np.ndarray,
        neighbours: int = 0,
        texts: list[str] | None = None,
        similarities: np.ndarray | None = None,
    ) -> tuple[Decisions, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The server's decision for a batch of vectors (and their texts, None: from the vectors alone):
        (decisions, probabilities, (neighbour ids, similarities)), fetching at least `neighbours` exemplars per
        vector (for evidence). A (near) copy of an exemplar is answered from memory (`Decisions.recalled`).
        similarities: one vector's (n,) to every exemplar, when computed already (`neighbours`).
        The evaluation harness measures this."""
        vectors = np.atleast_2d(vectors)
        calibration = self._calibration(texts)
        # Neighbours feed the kNN expert (when the fit uses it), the evidence, the out-of-scope check and memory
        # (the nearest few): fetch just as many as needed.
        wanted = max(neighbours, KNN_K if calibration.knn_weight or self.gate else 1, MEMORY_TIES if self.memory else 1)
        ids, sims = self.neighbours(vectors, wanted, similarities)
        # One reading of each text (counts, tf-idf) serves the words expert, the gate's words and the memory's guard.
        reading = self.words.read(texts) if texts is not None and self.words is not None else None
        words = self.words.log_probs(reading) if reading is not None and calibration.words_weight else None
        probs = self.probabilities(vectors, (ids[:, :KNN_K], sims[:, :KNN_K]), texts, words)
        nearest = sims[:, 0] if sims.shape[1] else np.full(len(vectors), -1.0)
        threshold, _ = self._thresholds(texts is not None)
        decisions = decide(probs, nearest, threshold, calibration.min_similarity, self.abstain)
        if self.gate is not None:
            read = texts if reading is None else reading
            decisions = gated(self.gate, decisions, vectors, (ids, sims), self.exemplar_in_scope, read)
        ensemble = decisions
        if self.memory is not None:
            decisions = self._recall(decisions, vectors, probs, ids, sims, texts, words)
            if texts is not None and self.reads_taught_facts:  # a taught text restated further: what differs decides
                table = (self._rows.texts, self.y)
                floor = self.memory.target
                decisions = memory_wide.apply(
                    decisions, ensemble, probs, ids, sims, texts, table, self.shipped, self.words, floor
                )
        if texts is not None and self.reads_taught_facts:
            # a decisive difference from the nearest taught text: neither memory nor the ensemble carries its label
            rows = self._rows.texts
            decisions = taught_diff.apply(decisions, ensemble, ids, sims, texts, rows, self.y, self.shipped, self.words)
        return decisions, probs, (ids, sims)

    def head(self) -> Head:
        """The ensemble without kNN that the memory's guard reads texts with."""
        return _head(self.calibration, self.weights, self.bias, self.words)

    def _recall(
        self,
        decisions: Decisions,
        vectors: np.ndarray,
        probs: np.ndarray,
        ids: np.ndarray,
        sims: np.ndarray,
        texts: list[str] | None,
        words: np.ndarray | None = None,
    ) -> Decisions:
        """Copies of an exemplar (`Memory.recall`: within its radius, and read alike by the profile's model) take
        its label: answered (p: the larger of the ensemble's for that label and the memory's measured agreement),
        or out of scope for an abstain label."""
        shift = None
        head, memory, table = self.head(), self.memory, self._rows
        assert memory is not None
        if texts is not None or not head.reads_words:  # else a text without its words: only identical ones are copies
            read = PairReader(head, table.vectors, table.texts, table.y)

            def shift(q: int, row: int) -> float:
                known = None if words is None else words[q : q + 1]  # the query's words, read by `judge`
                return read.query_shift(vectors[q], None if texts is None else texts[q], row, known)

        recalled = memory.recall(ids, sims, shift)
        rows = np.nonzero(recalled >= 0)[0]
        if not len(rows):
            return decisions
        best, p, reason = decisions.best.copy(), decisions.p.copy(), decisions.reason.copy()
        labels = self.y[recalled[rows]]
        abstained = np.zeros(len(rows), dtype=bool) if self.abstain is None else self.abstain[labels]
        reason[rows] = np.where(abstained, OUT_OF_SCOPE, None)
        # a copy of an abstain exemplar keeps the best answer and its p (it is out of scope, not confident)
        answers, labels = rows[~abstained], labels[~abstained]
        best[answers] = labels
        p[answers] = np.maximum(probs[answers, labels], self.memory.accuracy)
        return replace(decisions, best=best, p=p, reason=reason, recalled=recalled)

    def _verdict_threshold(self, has_text: bool, best: int) -> tuple[float, str]:
        """(threshold, source) the verdict's best label was answered at, or would have been."""
        threshold, source = self._thresholds(has_text)
        return (float(threshold[best]) if isinstance(threshold, np.ndarray) else threshold), source

    def expected_score(self, probs: np.ndarray) -> float | None:
        """The expected value over the answer labels (ordinal profiles), whatever the abstain labels hold."""
        if self.values is None:
            return None
        answers = probs if self.abstain is None else np.where(self.abstain, 0.0, probs)
        return float(answers @ self.values / max(float(answers.sum()), 1e-12))

    def verdict(
        self,
        vector: np.ndarray,
        text: str | None = None,
        detail: bool = False,
        show: int = 3,
        similarities: np.ndarray | None = None,
    ) -> Verdict:
        """The verdict on one text, by its vector and (when known) its words (similarities: see `judge`)."""
        if self.n == 0:  # a cold-start profile before its first teach
            return Verdict(label=None, p=1.0 / len(self.labels), unsure=True, reason="no_exemplars", nearest=-1.0)
        texts = None if text is None else [text]
        decisions, probs, (ids, sims) = self.judge(vector.reshape(1, -1), show if detail else 0, texts, similarities)
        probs, reason, best = probs[0], decisions.reason[0], int(decisions.best[0])
        recalled = -1 if decisions.recalled is None else int(decisions.recalled[0])
        verdict = Verdict(
            label=None if reason else self.labels[best],
            p=float(decisions.p[0]),
            unsure=reason is not None,
            score=self.expected_score(probs),
            reason=reason,
            nearest=float(decisions.nearest[0]),
            best=self.labels[best],
            threshold=self._verdict_threshold(text is not None, best),
        )
        model_best, model_p, _ = best_answer(probs[None, :], self.abstain)
        verdict.model = (float(model_p[0]), self.labels[int(model_best[0])])
        if decisions.differs is not None:
            verdict.differs = decisions.differs[0]
        if decisions.scope_p is not None:
            verdict.scope = (float(decisions.scope_p[0]), float(decisions.scope_threshold))
        if recalled >= 0:
            assert self.memory is not None
            verdict.memory = {
                "similarity": round(float(sims[0, 0]), 3),
                "radius": round(self.memory.radius, 3),
                "taught": None if self.shipped is None else recalled >= self.shipped,
            }
        if detail:
            top = [i for i in np.argsort(-probs) if self.abstain is None or not self.abstain[i]][:3]
            verdict.candidates = [(self.labels[i], float(probs[i])) for i in top]
            texts, y = self._rows.texts, self._rows.y
            verdict.neighbours = [
                (texts[i], self.labels[y[i]], float(s)) for i, s in zip(ids[0, :show], sims[0, :show], strict=True)
            ]
            if text is not None and self.words is not None and len(top) > 1 and reason != OUT_OF_SCOPE:
                verdict.words = self.words.evidence(text, int(top[0]), int(top[1]))
        return verdict

    # --- on-disk cache ---------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        with replacing(path) as tmp, tmp.open("wb") as out:
            arrays = {"vectors": self.vectors, "y": self.y, "weights": self.weights, "bias": self.bias}
            words = {} if self.words is None else self.words.to_arrays()
            memory = {} if self.memory is None else self.memory.to_arrays()
            gate = {} if self.gate is None else self.gate.to_arrays()
            np.savez(out, **arrays, **self.calibration.to_arrays(), **words, **memory, **gate)

    @classmethod
    def load(cls, path: Path, spec: ProfileSpec, texts: list[str]) -> FittedProfile:
        """A stored fit, at the operating point for the spec's current targets (chosen from the stored evidence:
        a changed target accuracy moves the point without a refit)."""
        with np.load(path) as data:
            calibration = Calibration.from_arrays(data).retarget(spec)
            words = WordsModel.from_arrays(data)
            if words is None:  # fitted without texts: judge from the vectors alone
                calibration = calibration.for_text(False)
            memory = Memory.from_arrays(data, spec.target_accuracy)
            compared = memory is None or not memory.guarded
            if compared:  # stored before memory (or its guard) existed: compare the exemplars now
                head = _head(calibration, data["weights"], data["bias"], words)
                memory = Memory.fit(data["vectors"], data["y"], spec.target_accuracy, head, texts)
            arrays = (data["vectors"], data["y"], texts, data["weights"], data["bias"])
            fitted = cls(spec, *arrays, calibration, words=words, memory=memory, gate=ScopeGate.from_arrays(data))
            fitted.memory_compared_at_load = compared
            return fitted


def _head(calibration: Calibration, weights: np.ndarray, bias: np.ndarray, words: WordsModel | None) -> Head:
    """What the memory's guard reads with: the head, and the words expert at the weight the fit gives it."""
    weight = calibration.for_text(True).words_weight if words is not None else 0.0
    return Head(calibration.c, weights, bias, words, weight)
