"""A verdict's cost went down without any verdict changing: the words expert's n-grams are looked up through a
per-feature table, a text is read once per verdict and profile (the words expert, the scope gate's words and the
memory's guard share the reading), knn votes are summed by bincount, a snapshot remembers the verdicts it gave
(`service/verdict_memo.py`), never past a teach or a refit, and several profiles judging one text read their
distinct exemplars through one product (`neighbour_search.SharedRows`).

Two rules of comparison. The changes up to the verdict memo are the same to the last bit, and their tests keep
asserting that (`everything`, exact). From the shared product on, the maintainers' rule (6 Dec) is that a change
must be *decision-identical*, not bit-identical: the same label, reason, unsure flag, best label, threshold,
memory and detail fields (neighbours' texts and labels, candidates' labels, words, differing clauses) on every
text of the test sets, and every probability and similarity within 1e-6 of before (`assert_decision_identical`;
BLAS sums a row in another order inside another matrix, so similarities move in the last bits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder

from mcp_latent.judge import ensemble, exemplar_rows, fitted, neighbour_search, scope_gate, words
from mcp_latent.judge.exemplar_rows import QUANTIZE_AFTER, ExemplarRows
from mcp_latent.judge.memory_evidence import PairReader
from mcp_latent.judge.quantized_rows import QuantizedRows
from mcp_latent.judge.words import Counts, Reading, WordsModel, featurize, featurize_one
from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

# Proposals in the shipped profiles' domain, and texts that propose nothing (written for this test).
TEXTS = [
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test to hit the quarter "
    "deadline; rollback is manual and takes about two hours.",
    "Let's add a retry with backoff to the webhook sender so a flaky receiver does not drop events.",
    "Rename the internal dashboard's 'Misc' tab to 'Other'.",
    "Drop the audit log table in production to free disk space; we can rebuild it later from backups if needed.",
    "Hire two more support agents for the EMEA night shift, funded from the unused events budget.",
    "Raise list prices 8% for new customers next quarter; existing contracts keep their rate until renewal.",
    "Launch a referral campaign on LinkedIn with a $50 credit for each signed-up team.",
    "thanks, the deploy finished and all pods are healthy",
    "what time is the standup tomorrow?",
    "Turn off two-factor authentication for the admin accounts until the SSO migration is done.",
    "Upgrade the PostgreSQL minor version during the Sunday maintenance window with a tested restore.",
    "Move the marketing site to a static host to cut hosting costs by half.",
]


def reference_log_probs(self: WordsModel, texts) -> np.ndarray:
    """The words expert as it was before: a binary search per n-gram over every stored entry, and every expert
    weighting the text's n-grams itself (a `Reading` is read again from its counts)."""
    if isinstance(texts, Reading):
        texts = texts.counts
    counts = texts if isinstance(texts, Counts) else featurize(texts)
    n_texts = counts.n_texts
    value = words._tfidf(counts, self.idf)
    joint = np.zeros(n_texts * self.n_labels, dtype=np.float64)
    for sums, weight in ((self.fitted, self._fitted_weight), (self.taught, self._taught_weight)):
        rows, entries = sums.lookup(counts.feature)
        joint += np.bincount(
            counts.text[rows] * self.n_labels + sums.label[entries],
            weights=value[rows] * weight[entries],
            minlength=len(joint),
        )
    mass = np.bincount(counts.text, weights=value, minlength=n_texts)
    joint = joint.reshape(n_texts, self.n_labels) - np.outer(mass, self._normaliser)
    joint -= joint.max(axis=1, keepdims=True)
    return joint - np.log(np.exp(joint).sum(axis=1, keepdims=True))


def reference_knn_votes(similarities, neighbour_labels, n_labels):
    weights = np.exp((similarities - similarities[:, :1]) / ensemble.KNN_TAU)
    votes = np.zeros((len(similarities), n_labels), dtype=np.float64)
    np.add.at(
        votes,
        (np.repeat(np.arange(len(similarities)), similarities.shape[1]), neighbour_labels.ravel()),
        weights.ravel(),
    )
    return votes / votes.sum(axis=1, keepdims=True)


def everything(verdict) -> tuple:
    """Every field of a verdict, floats exact."""
    return (
        verdict.label,
        verdict.p,
        verdict.unsure,
        verdict.score,
        verdict.reason,
        verdict.nearest,
        verdict.best,
        verdict.threshold,
        verdict.memory,
        verdict.model,
        verdict.scope,
        verdict.candidates,
        verdict.neighbours,
        verdict.words,
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, warm_profile_cache):
    """The shipped profiles with the real model (fits from the session's shared cache)."""
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    service = LatentService(
        Settings(data_dir=tmp_path_factory.mktemp("verdict-cost"), profile_cache_dir=warm_profile_cache)
    )
    service.start()
    service.wait_ready()
    yield service
    service.close()


def judged(service, monkeypatch=None) -> dict:
    """Verdicts of every shipped profile on TEXTS, near copies of exemplars, with and without words and detail, on
    the served snapshot and on one that was just taught a few texts (its taught n-grams and memory rows)."""
    vectors = service.embedder.embed(TEXTS)
    out = {}
    for name in ("risk", "roi", "category"):
        served = service.live[name].fitted(600)
        picked = [served.texts[i] for i in range(0, served.n, served.n // 6)][:6]
        extra = picked + [t + " Thanks." for t in picked] + [t.replace(" the ", " a ", 1) for t in picked]
        texts, vecs = TEXTS + extra, np.concatenate([vectors, service.embedder.embed(extra)])
        taught = served.with_exemplars(vecs[:4], np.arange(4) % len(served.labels), texts[:4])
        for tag, snapshot in (("served", served), ("taught", taught)):
            for i, (text, vector) in enumerate(zip(texts, vecs, strict=True)):
                out[tag, name, i, "words"] = everything(snapshot.verdict(vector, text))
                out[tag, name, i, "detail"] = everything(snapshot.verdict(vector, text, True, 3))
                out[tag, name, i, "vector"] = everything(snapshot.verdict(vector, None))
            decisions, probs, _ = snapshot.judge(vecs, 0, texts)  # the batch the evaluation harness measures
            out[tag, name, "batch"] = (decisions.p.tolist(), list(decisions.reason), probs.tolist())
    return out


@pytest.fixture
def float32_neighbours(monkeypatch):
    """One query's neighbours from the float32 product (not the int8 copy, tested on its own rule below): the
    comparisons that keep asserting bit-identity."""
    monkeypatch.setattr(ExemplarRows, "quantized", lambda self, n: None)


def test_verdicts_are_bit_for_bit_those_of_the_sparse_lookup_and_separate_reads(
    shipped, monkeypatch, float32_neighbours
):
    now = judged(shipped)
    monkeypatch.setattr(WordsModel, "log_probs", reference_log_probs)
    monkeypatch.setattr(fitted, "knn_votes", reference_knn_votes)
    monkeypatch.setattr(scope_gate, "knn_votes", reference_knn_votes)
    before = judged(shipped)
    assert now.keys() == before.keys()
    differ = [key for key in now if now[key] != before[key]]
    assert not differ, differ[:5]
    labels = {v[0] for k, v in now.items() if k[-1] != "batch"}
    assert len(labels) > 4  # the set judges several labels and abstentions, not one answer throughout


def reference_neighbours(self, vectors, k, sims=None):
    """Neighbours as they were before: the batch search (chunks, take_along_axis) for one query too."""
    assert sims is None  # a verdict judged alone computes its own similarities
    return ensemble.exact_neighbours(np.atleast_2d(vectors), self.vectors, k)


def reference_featurize_one(text):
    """One text's counts as they were before: every n-gram of `ngrams` hashed, counted through the batch path."""
    features = np.array([words.feature_of(gram) for gram in words.ngrams(text)], dtype=np.int64)
    keys, count = np.unique(features, return_counts=True)
    return words.Counts(np.zeros(len(keys), dtype=np.int64), keys, count.astype(np.float32), 1)


def test_verdicts_are_bit_for_bit_those_of_the_batch_neighbours_and_hashing_every_n_gram(
    shipped, monkeypatch, float32_neighbours
):
    """A single query's neighbours skip the batch bookkeeping and one text is counted without the batch's text ids:
    every verdict field stays the same to the bit (against the batch search and hashing every n-gram of `ngrams`)."""
    words.featurize_one.cache_clear()
    nearest_one, calls = neighbour_search.nearest_of_one, []
    monkeypatch.setattr(neighbour_search, "nearest_of_one", lambda *a: calls.append(a) or nearest_one(*a))
    now = judged(shipped)
    assert calls, "the single-query neighbours were not the ones compared"
    monkeypatch.setattr(fitted.FittedProfile, "neighbours", reference_neighbours)
    monkeypatch.setattr(words, "featurize_one", reference_featurize_one)
    before = judged(shipped)
    assert now.keys() == before.keys()
    differ = [key for key in now if now[key] != before[key]]
    assert not differ, differ[:5]


def test_the_in_scope_mask_is_each_snapshots_own(shipped):
    """The gate's mask of answer-label exemplars is kept per snapshot: a taught snapshot's covers its new rows."""
    for name in ("risk", "roi", "category"):
        served = shipped.live[name].fitted(600)
        vectors = shipped.embedder.embed(TEXTS[:3])
        abstain_label = int(np.flatnonzero(served.abstain)[0])
        taught = served.with_exemplars(vectors, np.full(3, abstain_label), TEXTS[:3])
        for snapshot in (served, taught):
            assert snapshot.exemplar_in_scope.shape == (snapshot.n,)
            assert np.array_equal(snapshot.exemplar_in_scope, ~snapshot.abstain[snapshot.y])
        assert not taught.exemplar_in_scope[-3:].any() and served.exemplar_in_scope is not taught.exemplar_in_scope


@pytest.mark.parametrize(
    "text", [*TEXTS, "", "a", " x  y ", "the the the cat cat", "Ünïcödé naïve café 東京", "x" * 300]
)
def test_one_texts_counts_are_those_of_the_batch(text):
    words.featurize_one.cache_clear()
    one, batch = featurize_one(text), featurize([text])
    for field in ("text", "feature", "count"):
        a, b = getattr(one, field), getattr(batch, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert one.n_texts == batch.n_texts == 1


def test_a_text_is_read_once_per_verdict_and_profile(shipped, monkeypatch):
    """One tf-idf weighting of the text per verdict serves the words expert, the scope gate's words and the memory's
    guard (it was three: one each)."""
    weighed = []
    original = words._tfidf
    monkeypatch.setattr(words, "_tfidf", lambda counts, idf: weighed.append(counts) or original(counts, idf))
    guard_reads = []
    shift = PairReader.query_shift
    monkeypatch.setattr(
        PairReader, "query_shift", lambda self, *a, **k: guard_reads.append(a[1]) or shift(self, *a, **k)
    )
    risk = shipped.live["risk"].fitted(600)
    assert risk.words is not None and risk.gate is not None and risk.gate.words is not None and risk.memory
    candidates = [t + suffix for t in risk.texts[::97][:30] for suffix in (" Thanks.", " (see above)")]
    guarded = 0
    for text, vector in zip(candidates, shipped.embedder.embed(candidates), strict=True):
        featurize_one.cache_clear()
        weighed.clear()
        guard_reads.clear()
        risk.verdict(vector, text)
        query = featurize_one(text)
        assert sum(counts is query for counts in weighed) == 1, text
        # the guard reads only the exemplar's own text besides (one weighting per exemplar it compares with)
        assert len(weighed) == 1 + len(guard_reads), text
        guarded += bool(guard_reads)
    assert guarded, "no near copy reached the memory's guard: the test checked only the plain path"


def test_the_gate_shares_the_profiles_idf_array(shipped):
    for name in ("risk", "roi", "category"):
        snapshot = shipped.live[name].fitted(600)
        assert snapshot.gate.words.idf is snapshot.words.idf


def test_a_remembered_verdict_is_served_again_and_never_past_a_teach_or_refit(service):
    """The memo is per snapshot: a teach and a refit make new snapshots, so the next verdict is computed afresh (the
    taught label answers from memory at once) and equals the current snapshot's own verdict."""
    handoff = service.handoff("apple banana cherry smoothie for the team", evaluate=["kind"])
    handle, hits = handoff["handle"], service.verdicts.hits
    first = service.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
    assert first == handoff["verdicts"]["kind"] and service.verdicts.hits == hits + 1  # the handoff's own verdict
    again = service.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
    assert again == first and service.verdicts.hits == hits + 2
    other = "tools" if first.get("label") == "fruit" else "fruit"
    service.teach(profile="kind", label=other, handle=handle)
    taught = service.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
    assert taught["label"] == other, taught
    record = service._store().get(handle, "default")

    def fresh() -> dict:
        return service.live["kind"].fitted(5).verdict(record.vector, record.text).compact()

    assert taught == fresh()
    assert service.live["kind"].wait_refitted(60)
    refitted = service.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
    assert refitted == fresh() and refitted["label"] == other


def test_the_memo_can_be_switched_off(settings, fake_embedder, fruit_tools_profile):
    from mcp_latent.service.api import LatentService

    service = LatentService(settings.model_copy(update={"verdict_cache_size": 0}), embedder=fake_embedder)
    service.start()
    service.wait_ready(5)
    try:
        handle = service.handoff("hammer and wrench", evaluate=["kind"])["handle"]
        for _ in range(3):
            service.evaluate(handle=handle, profiles=["kind"])
        assert service.verdicts.hits == 0
    finally:
        service.close()


def test_the_memo_keeps_at_most_its_size_per_snapshot(service):
    service.verdicts.size = 3
    snapshot = service.live["kind"].fitted(5)
    texts = [f"apple number {i}" for i in range(6)]
    for text, vector in zip(texts, service.embedder.embed(texts), strict=True):
        service.verdicts.verdict(snapshot, vector, text)
    assert len(service.verdicts._by_snapshot[snapshot]) == 3


@pytest.mark.parametrize(
    "text",
    [*TEXTS, "Ünïcödé naïve café — 東京 déjà-vu", "ß straße İstanbul", "emoji 🚀 launch", "a", "", " x  y ", "x" * 300],
)
def test_the_remembered_token_features_are_those_of_every_n_gram(text):
    """`featurize` hashes a token's character n-grams once and remembers them: the features are still exactly those
    of `ngrams`, in order, whatever the script (twice: the second read comes from the memory)."""
    expected = [words.feature_of(gram) for gram in words.ngrams(text)]
    for _ in range(2):
        assert words.text_features(text).tolist() == expected
    counts = featurize([text, text.upper()])
    assert counts.n_texts == 2 and int(counts.count.sum()) == len(expected) + len(words.ngrams(text.upper()))


# --- decision-identical changes (the rule of 6 Dec) ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-6


def decision(verdict) -> tuple:
    """What must not change at all: the decision and what a detailed verdict shows besides numbers."""
    return (
        verdict.label,
        verdict.unsure,
        verdict.reason,
        verdict.best,
        verdict.threshold,
        verdict.memory,
        None if verdict.model is None else verdict.model[1],
        [label for label, _ in verdict.candidates],
        [(text, label) for text, label, _ in verdict.neighbours],
        verdict.words,
        verdict.differs,
    )


def numbers(verdict) -> list[float]:
    """What may move by at most TOLERANCE: the probabilities and similarities."""
    out = [verdict.p, verdict.nearest, -1.0 if verdict.score is None else verdict.score]
    out += [] if verdict.model is None else [verdict.model[0]]
    out += [] if verdict.scope is None else list(verdict.scope)
    out += [p for _, p in verdict.candidates] + [sim for _, _, sim in verdict.neighbours]
    return out


def assert_decision_identical(now: dict, before: dict) -> None:
    assert now.keys() == before.keys()
    changed = [key for key in now if decision(now[key]) != decision(before[key])]
    assert not changed, [(key, decision(now[key]), decision(before[key])) for key in changed[:3]]
    moved = max(
        max((abs(a - b) for a, b in zip(numbers(now[key]), numbers(before[key]), strict=True)), default=0.0)
        for key in now
    )
    assert moved <= TOLERANCE, moved


def test_sets() -> list[str]:
    """Held-out proposals, the realistic set (chat, tickets, proposals) and non-proposals, texts only."""
    texts = []
    for path in ("tools/data/proposals/heldout_texts_only.jsonl", "tools/data/realistic/heldout.jsonl"):
        lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    texts += (ROOT / "tools/data/exemplars/off_topic.txt").read_text(encoding="utf-8").splitlines()
    return [*TEXTS, *(t for t in texts if t.strip())]


test_sets.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def judged_sets(shipped):
    """The test sets with their vectors, each shipped profile's served snapshot and one just taught four of them."""
    texts = test_sets()
    vectors = shipped.embedder.embed(texts)
    snapshots = {}
    for name in ("risk", "roi", "category"):
        served = shipped.live[name].fitted(600)
        # near copies of its exemplars: the memory's and its guard's ground
        picked = [served.texts[i] for i in range(0, served.n, served.n // 20)][:20]
        snapshots[name] = served, picked + [t + " Thanks." for t in picked]
    extra = [t for _, picked in snapshots.values() for t in picked]
    texts, vectors = texts + extra, np.concatenate([vectors, shipped.embedder.embed(extra)])
    served = {name: snapshot for name, (snapshot, _) in snapshots.items()}
    taught = {
        name: snapshot.with_exemplars(vectors[:4], np.arange(4) % len(snapshot.labels), texts[:4])
        for name, snapshot in served.items()
    }
    return texts, vectors, {"served": served, "taught": taught}


def asked(judged_sets):
    """(key, snapshot, vector, text or None, detail) of every verdict compared: every text of the test sets with its
    words on the served snapshots, detail on a tenth and by the vector alone on a tenth; every fourth text on the
    just-taught snapshots (their taught rows lie past the int8 copy)."""
    texts, vectors, sets = judged_sets
    for tag, snapshots in sets.items():
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            if tag == "taught" and i % 4:
                continue
            for name, snapshot in snapshots.items():
                yield (tag, name, i), snapshot, vector, text, tag == "served" and i % 10 == 0
                if tag == "served" and i % 10 == 5:
                    yield (tag, name, i, "vector"), snapshot, vector, None, False


@pytest.fixture(scope="module")
def float32_verdicts(judged_sets) -> dict:
    """The verdicts compared against: each profile's own float32 product."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ExemplarRows, "quantized", lambda self, n: None)
        return {key: s.verdict(v, text, detail, 3) for key, s, v, text, detail in asked(judged_sets)}


def test_no_int8_copy_is_built_unless_the_setting_asks(monkeypatch, tmp_path):
    """Off by default (`int8_neighbours`: it imports onnx, +22 MB serving RSS, for no time measured through the
    server); a service started with it on turns it on for the process."""
    monkeypatch.setitem(exemplar_rows.INT8, "enabled", exemplar_rows.INT8["enabled"])  # restored after the test
    exemplar_rows.use_int8_neighbours(Settings().int8_neighbours)
    rows = ExemplarRows(np.random.default_rng(0).standard_normal((600, 16)).astype(np.float32), np.zeros(600), [])
    for _ in range(3 * QUANTIZE_AFTER):
        assert rows.quantized(600) is None
    assert rows._building is None
    LatentService(Settings(data_dir=tmp_path / "d", int8_neighbours=True), embedder=HashingEmbedder())
    assert exemplar_rows.INT8["enabled"]


def test_the_int8_copy_is_built_after_a_few_searches_not_the_first(monkeypatch):
    monkeypatch.setitem(exemplar_rows.INT8, "enabled", True)
    rows = ExemplarRows(np.random.default_rng(0).standard_normal((600, 16)).astype(np.float32), np.zeros(600), [])
    query = rows.vectors[:1] + 0.1
    for _ in range(QUANTIZE_AFTER - 1):
        assert rows.quantized(600) is None and rows._building is None
    rows.quantized(600)
    assert rows.wait_quantized(60) and rows.quantized(600) is not None
    found = neighbour_search.nearest(query, rows.vectors[:600], 5, None, rows)
    assert np.array_equal(found[0], neighbour_search.nearest_of_one(query, rows.vectors[:600], 5)[0])
    small = ExemplarRows(rows.vectors[:100], np.zeros(100), [])
    for _ in range(2 * QUANTIZE_AFTER):
        small.quantized(100)
    assert small._building is None  # too few rows to be worth a copy


@pytest.mark.timeout(1200)  # several thousand verdicts: minutes on the loaded 2-core machine
def test_the_int8_bound_gives_the_same_decisions(judged_sets, float32_verdicts, monkeypatch):
    """One query's neighbours through the int8 copy's bound (`quantized_rows`) against the float32 product:
    decision-identical on the test sets. The int8 path must have been the one taken."""
    for snapshot in [*judged_sets[2]["served"].values(), *judged_sets[2]["taught"].values()]:
        snapshot._rows.start_quantizing(snapshot.n)  # a taught copy may have its own
        assert snapshot._rows.wait_quantized(120)
    calls = []
    nearest = QuantizedRows.nearest
    monkeypatch.setattr(QuantizedRows, "nearest", lambda *a: calls.append(1) or nearest(*a))
    now = {key: s.verdict(v, text, detail, 3) for key, s, v, text, detail in asked(judged_sets)}
    assert len(calls) == len(now)  # every verdict read the int8 copy
    assert_decision_identical(now, float32_verdicts)
    answered = {v.label for v in now.values()}
    assert len(answered) > 6 and None in answered  # several labels and abstentions, not one answer throughout
    assert any(v.memory for v in now.values())  # near copies reached the memory


@pytest.mark.timeout(1200)
def test_one_product_over_several_profiles_gives_the_same_decisions(judged_sets, float32_verdicts):
    """The three shipped profiles' neighbours from one product over their distinct exemplars (`SharedRows`) against
    each profile's own product: decision-identical on the test sets, and fewer rows read."""
    texts, vectors, sets = judged_sets
    shared = {
        tag: neighbour_search.SharedRows([s.vectors for s in snapshots.values()]) for tag, snapshots in sets.items()
    }
    for rows in shared.values():
        assert len(rows.matrix) < 0.7 * rows.rows  # the profiles share exemplars: fewer distinct rows to read
    given: dict = {}
    now = {}
    for key, snapshot, vector, text, detail in asked(judged_sets):
        tag, name, i = key[:3]
        if (tag, i) not in given:
            given[tag, i] = dict(zip(sets[tag], shared[tag].similarities(vector), strict=True))
        sims = given[tag, i][name]
        assert np.abs(sims - snapshot.vectors @ vector).max() <= TOLERANCE
        now[key] = snapshot.verdict(vector, text, detail, 3, sims)
    assert_decision_identical(now, float32_verdicts)


def test_the_int8_bound_keeps_exactly_the_nearest_rows(judged_sets):
    """The rows the int8 bound keeps always hold the float32 product's k nearest (every k the verdicts ask for, with
    taught rows past the copy), and far fewer than all."""
    texts, vectors, sets = judged_sets
    for name, snapshot in sets["served"].items():
        pool = snapshot.vectors
        quantized = QuantizedRows(pool[:-50])  # the last 50 rows play rows taught after the copy
        for k in (1, 4, 10, 13):
            for vector in vectors[::3]:
                query = vector[None, :]
                ids, sims = quantized.nearest(query, pool, k)
                full = pool @ vector
                expected = np.sort(full)[::-1][:k]
                assert np.abs(np.sort(sims[0])[::-1] - expected).max() <= TOLERANCE, (name, k)
                assert np.all(full[ids[0]] >= expected[-1] - TOLERANCE)
        kept = quantized._session.run(None, {"q": vectors[:1], "k": np.array([10])})[0][0]
        assert len(kept) < len(pool) / 20
    tiny, eye = QuantizedRows(np.eye(4, 8, dtype=np.float32)), np.eye(4, 8, dtype=np.float32)
    assert tiny.nearest(np.zeros((1, 8), np.float32), eye, 2)[1].tolist() == [[0.0, 0.0]]  # all tie at 0
    assert tiny.nearest(np.full((1, 8), np.nan, np.float32), eye, 2) is None  # unreadable: the float32 product
    assert tiny.nearest(np.ones((1, 8), np.float32), eye, 5) is None  # more than its rows


def test_a_call_judging_with_several_profiles_reads_one_product_built_in_the_background(shipped, monkeypatch):
    """`handoff` with three verdicts: the first call of a new set of snapshots judges with each profile's own product
    while the set's rows are built on a background thread; the next reads one product, decision-identical to the
    profiles' own verdicts. A teach makes a new snapshot, hence a new set."""
    names = ["risk", "roi", "category"]
    shared, used = shipped.verdicts.shared, []
    original = neighbour_search.SharedRows.similarities
    monkeypatch.setattr(
        neighbour_search.SharedRows, "similarities", lambda self, q: used.append(self) or original(self, q)
    )
    assert shared.wait(60)
    shared._sets.clear()
    built = shared.built
    shipped.handoff(TEXTS[0] + " (first of a new set)", evaluate=names)
    assert not used and shared.wait(60) and shared.built == built + 1
    for text in TEXTS[1:]:
        handle = shipped.handoff(text, evaluate=names, detail=True)["handle"]
        record = shipped._store().get(handle, "default")
        again = shipped.evaluate(handle=handle, profiles=names, detail=True)["verdicts"]
        for name in names:
            own = shipped.live[name].fitted(5).verdict(record.vector, record.text, True, 3)
            fields = ("label", "unsure", "reason")
            assert [again[name].get(f) for f in fields] == [own.detailed().get(f) for f in fields], (text, name)
            assert [n[:2] for n in again[name]["neighbours"]] == [n[:2] for n in own.detailed()["neighbours"]]
            assert abs(again[name]["p"] - own.detailed()["p"]) <= 0.01  # rounded to 2 places: p within 1e-6
    assert len(used) == len(TEXTS) - 1 and shared.built == built + 1  # one product per call, the set built once
    taught = shipped.handoff("Let the interns push straight to main without review.", evaluate=names)["handle"]
    shipped.teach(profile="risk", label=shipped.live["risk"].fitted(5).labels[0], handle=taught)
    shipped.handoff(TEXTS[0] + " (after a teach)", evaluate=names)
    assert shared.wait(60) and shared.built >= built + 2  # risk's new snapshot: a new set


def test_sharing_can_be_switched_off_and_needs_two_profiles():
    off = neighbour_search.SharedProducts(0)

    class Snapshot:
        n = 3
        vectors = np.eye(3, dtype=np.float32)

        def __init__(self):
            self._rows = ExemplarRows(self.vectors, np.zeros(3), [])

    assert off.similarities([Snapshot(), Snapshot()], np.ones(3, np.float32)) is None
    on = neighbour_search.SharedProducts(2)
    one = Snapshot()
    assert on.similarities([one], np.ones(3, np.float32)) is None and on.built == 0
    pair = [Snapshot(), Snapshot()]
    assert on.similarities(pair, np.ones(3, np.float32)) is None and on.wait(10) and on.built == 1
    sims = on.similarities(pair, np.array([1.0, 2.0, 3.0], np.float32))
    assert [s.tolist() for s in sims] == [[1.0, 2.0, 3.0]] * 2
    same_rows = Snapshot()  # a new threshold: a new snapshot over the same exemplar storage
    same_rows._rows = pair[0]._rows
    assert on.similarities([same_rows, pair[1]], np.ones(3, np.float32)) is not None and on.built == 1
    shared = neighbour_search.SharedRows([p.vectors for p in pair])
    assert shared.matrix.shape == (3, 3) and shared.rows == 6  # identical rows stored once
