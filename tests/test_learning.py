"""The learning loop with a fake embedder: teach counts from the next call, never blocks judging, overlays on
shipped profiles, per-profile readiness, cold start, savings counts. (Through the real server: test_e2e_learning.)"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from conftest import FRUIT, TOOLS, HashingEmbedder, write_profile

from mcp_latent.embedding.base import CachedEmbedder
from mcp_latent.errors import InvalidInput, NotFound
from mcp_latent.judge import fitted as evaluator
from mcp_latent.profiles.spec import builtin_profiles_dir
from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

SMALL = [f"small red ball number {i}" for i in range(6)]
LARGE = [f"large blue box number {i}" for i in range(6)]


@pytest.fixture
def two_profiles(settings, fruit_tools_profile):
    write_profile(settings.user_profiles_dir, "size", {"small": SMALL, "large": LARGE}, extra="min_similarity = -1.0")
    return settings


def started(settings, embedder=None) -> LatentService:
    service = LatentService(settings, embedder=embedder or HashingEmbedder())
    service.start()
    return service


def test_a_taught_exemplar_decides_the_next_call(service):
    text = "durian rambutan mangosteen"
    before = service.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]
    assert before["neighbours"][0][0] != text
    other = "fruit" if before["top"][0][0] == "tools" else "tools"  # teach against what it would say
    result = service.teach("kind", other, text=text)
    assert result["taught"]["kind"]["label"] == other and result["taught"]["kind"]["exemplars"] == 25
    verdict = service.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]
    assert verdict["neighbours"][0] == [text, other, 1.0]
    assert verdict["top"][0][0] == other
    again = service.teach("kind", other, text=text)["taught"]["kind"]
    assert again["added"] is False and again["exemplars"] == 25  # the same exemplar twice is stored once


def test_one_call_teaches_several_profiles(two_profiles):
    service = started(two_profiles)
    handle = service.handoff("apple banana small red ball")["handle"]
    result = service.teach(handle=handle, labels={"kind": "fruit", "size": "small"})
    assert set(result["taught"]) == {"kind", "size"}
    assert {p["name"]: p["taught"] for p in service.list_profiles()} == {"kind": 1, "size": 1}
    with pytest.raises(InvalidInput, match="labels: small, large"):
        service.teach(handle=handle, labels={"kind": "fruit", "size": "huge"})
    with pytest.raises(NotFound, match="available: kind, size"):
        service.teach(handle=handle, labels={"nope": "x"})
    with pytest.raises(InvalidInput, match="not both"):
        service.teach("kind", "fruit", handle=handle, labels={"size": "small"})
    assert {p["name"]: p["taught"] for p in service.list_profiles()} == {"kind": 1, "size": 1}  # nothing half-taught
    service.close()
    reloaded = started(two_profiles)
    assert {p["name"]: p["taught"] for p in reloaded.list_profiles()} == {"kind": 1, "size": 1}
    reloaded.close()


def taught_counts(settings: Settings) -> dict[str, int]:
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start(fit_profiles=False)  # counting (and teaching) needs no fit
    try:
        return {p["name"]: p["taught"] for p in service.list_profiles()}
    finally:
        service.close()


def test_shipped_profiles_learn_into_an_overlay_and_their_files_stay_untouched(tmp_path):
    shipped = {path.name: path.read_bytes() for path in builtin_profiles_dir().glob("*.toml")}
    service = LatentService(Settings(data_dir=tmp_path / "d"), embedder=HashingEmbedder())
    service.start(fit_profiles=False)  # a teach is applied when the profile is fitted
    service.teach("risk", "high", text="wipe the production database without a backup")
    service.close()
    assert {path.name: path.read_bytes() for path in builtin_profiles_dir().glob("*.toml")} == shipped
    assert taught_counts(Settings(data_dir=tmp_path / "d"))["risk"] == 1
    assert taught_counts(Settings(data_dir=tmp_path / "other"))["risk"] == 0  # overlays are per data dir


def test_taught_logs_of_earlier_versions_are_imported_once(settings, fruit_tools_profile):
    log = settings.user_profiles_dir / "kind.taught.jsonl"
    log.write_text('{"label": "fruit", "text": "papaya guava"}\n{"label": "tools", "text": "chisel and saw"}\n')
    assert taught_counts(settings)["kind"] == 2
    assert taught_counts(settings)["kind"] == 2  # imported once, not again at the next start


def test_two_servers_on_one_data_dir_judge_alike_after_a_teach(settings, fruit_tools_profile):
    settings.store_poll_seconds = 0.05
    first, second = started(settings), started(settings)
    text = "durian rambutan mangosteen"
    first.teach("kind", "tools", text=text)
    deadline = time.monotonic() + 30
    while text not in second.live["kind"].snapshot.texts:  # picked up by the other process's poll
        assert time.monotonic() < deadline, "the other server never saw the teach"
        time.sleep(0.05)
    assert first.evaluate(text=text, profiles=["kind"]) == second.evaluate(text=text, profiles=["kind"])
    first.close()
    second.close()


class SlowFit:
    """Holds every full fit of one profile until released, like a minute-long refit of a large profile."""

    def __init__(self, monkeypatch, name: str):
        self.release = threading.Event()
        self.entered = threading.Event()
        original = evaluator.FittedProfile.fit.__func__

        def fit(cls, spec, *args, **kwargs):
            if spec.name == name:
                self.entered.set()
                assert self.release.wait(60)
            return original(cls, spec, *args, **kwargs)

        monkeypatch.setattr(evaluator.FittedProfile, "fit", classmethod(fit))


def run_in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_teach_and_evaluate_from_threads_never_wait_for_a_refit(two_profiles, monkeypatch):
    # Before per-profile owners, a refit held one global fit lock: every evaluate of every profile waited on it.
    service = started(two_profiles)
    handle = service.handoff("apple banana")["handle"]
    slow = SlowFit(monkeypatch, "size")
    service.teach("size", "large", text="an enormous blue crate")
    assert slow.entered.wait(30)  # the background refit of `size` is now stuck
    calls = [
        lambda: service.evaluate(handle=handle, profiles=["kind"]),
        lambda: service.evaluate(handle=handle, profiles=["size"]),  # the refitting profile itself answers too
        lambda: service.teach("size", "small", text="a tiny red marble"),
        lambda: service.teach("kind", "fruit", handle=handle),
    ]
    threads = [run_in_thread(call) for call in calls]
    for thread, out in threads:
        thread.join(10)  # a deadlock detector, not a speed target: these take milliseconds
        assert not thread.is_alive() and out, "a call waited for another fit"
    assert "a tiny red marble" in service.live["size"].snapshot.texts
    slow.release.set()
    assert service.wait_refitted(60)
    assert {"an enormous blue crate", "a tiny red marble"} <= set(service.live["size"].snapshot.texts)
    service.close()


def test_background_refits_rest_in_proportion_to_their_cost(two_profiles, monkeypatch):
    # Refits used to run back to back while teaches kept coming, taking a core from serving for the whole stream.
    two_profiles.refit_cpu_share = 0.2  # each refit of d seconds is followed by at least 4 d seconds of rest
    service = started(two_profiles)
    live = service.live["size"]
    spans = []
    real_fit = live._fit

    def timed_fit(*args, **kwargs):
        begin = time.monotonic()
        time.sleep(0.1)  # a refit that costs more than the 0.2 s debounce, once rested 4 times over
        try:
            return real_fit(*args, **kwargs)
        finally:
            spans.append((begin, time.monotonic()))

    monkeypatch.setattr(live, "_fit", timed_fit)
    for i in range(3):  # each teach right after the previous refit: three refits by one thread, resting between
        service.teach("size", "small", text=f"a tiny red marble {i}")
        wait_until(lambda n=i: len(spans) > n)
    assert service.wait_refitted(60)
    for (begin, end), (next_begin, _) in zip(spans, spans[1:], strict=False):
        assert next_begin - end >= (end - begin) * 4 * 0.99  # rested at least 4 times as long as the refit took
    service.close()


def test_a_head_refitted_between_recalibrations_keeps_the_regularization_per_exemplar(settings, fruit_tools_profile):
    # At a fixed C a head refitted on more exemplars is sharper than the one its temperature and threshold were
    # chosen for: p drifted up and answered accuracy fell below the target on the HWU64 stream (96.7% for 97%).
    service = started(settings)
    live = service.live["kind"]
    before = live.snapshot
    for i in range(4):  # 24 -> 28 exemplars: a head refit, not a recalibration (that waits for 25% growth)
        service.teach("kind", "fruit", text=f"ripe mango and papaya {i}")
    assert service.wait_refitted(60) and live.refits >= 1
    after = live.snapshot
    assert after.n == before.n + 4 and after.calibration.threshold == before.calibration.threshold
    assert after.calibration.c == pytest.approx(before.calibration.c * before.n / after.n)
    service.close()


def judged_and_taught(settings, taught_as):
    """A service whose `kind` profile judged enough distinct texts to set a stream threshold, then was taught
    MIN_STREAM_CHECKS fruit texts as `taught_as` (each judged just before: the checks of p)."""
    from mcp_latent.judge.stream import MIN_STREAM_CHECKS, MIN_STREAM_VERDICTS

    service = started(settings)
    live = service.live["kind"]
    texts = [f"apple {i} banana {i // 8} cherry {i % 8} pear" for i in range(2 * MIN_STREAM_VERDICTS)]
    made = [service.handoff(text, evaluate=["kind"]) for text in texts]
    for m in made[:50]:
        service.evaluate(handle=m["handle"], profiles=["kind"])  # judged again: recorded once
    recorded, _ = live.stream.verdicts()
    distinct = {row.tobytes() for row in HashingEmbedder().embed(texts)}  # hashed words may collide
    assert len(recorded) == len(distinct) >= MIN_STREAM_VERDICTS
    for i in range(MIN_STREAM_CHECKS):
        service.teach("kind", taught_as, text=f"apple banana cherry fruit salad extra {i} bowl {i // 5}")
    assert service.wait_refitted(60)
    return service, live, recorded


def test_refits_answer_from_the_threshold_the_streams_verdicts_set(settings, fruit_tools_profile):
    # A taught profile's exemplars are the hard texts it escalated: the cross-validated threshold asked for more
    # than the stream needed. Once enough verdicts are recorded (each text once) and the taught texts' verdicts
    # confirm p, a refit sets the threshold the stream's calibrated p supports for the target accuracy.
    from mcp_latent.judge.stream import stream_threshold

    # Issue 24: the taught texts all confirmed the answers, which is evidence for the fitted point: the stream's
    # threshold applies where it is lower (never above the fit's while spot checks meet the target).
    service, live, recorded = judged_and_taught(settings, "fruit")
    expected = stream_threshold(recorded, live.base.target_accuracy)
    assert expected is not None and live.stream.stream_threshold == pytest.approx(expected)
    # Here the stream asked for more than the fit's point (tests/test_sticks.py has it lowering one).
    served, source = live.snapshot.threshold(True)
    assert live.stream.online is None and source == "fit" and served < expected
    service.close()


def test_no_stream_threshold_while_the_taught_texts_say_p_is_overconfident(settings, fruit_tools_profile):
    # Every taught text contradicts the confident verdict it had: p does not hold on this stream, so the
    # threshold stays the fit's own.
    service, live, _ = judged_and_taught(settings, "tools")
    assert live.stream.stream_threshold is None
    service.close()


class GatedEmbedder(HashingEmbedder):
    """Embeds texts containing `word` only once the gate opens: a profile that takes forever to embed."""

    def __init__(self, word: str):
        super().__init__()
        self.word = word
        self.gate = threading.Event()

    def embed(self, texts):
        if any(self.word in t for t in texts):
            assert self.gate.wait(60)
        return super().embed(texts)


def test_each_profile_becomes_ready_on_its_own(settings, fruit_tools_profile):
    huge = {"a": [f"huge alpha {i}" for i in range(1500)], "b": [f"huge beta {i}" for i in range(1500)]}
    write_profile(settings.user_profiles_dir, "huge", huge)
    settings.profile_wait_seconds = 10  # the small profile may wait this long; `huge` is estimated far longer
    embedder = GatedEmbedder("huge")
    service = LatentService(settings, embedder=embedder)
    service.start_in_background()
    service.wait_ready(30)
    verdict = service.evaluate(text="apple banana", profiles=["kind"])["verdicts"]["kind"]  # not held up by `huge`
    assert verdict["label"] == "fruit"
    # Not an error (a handoff would lose its handle): the note stands in the verdict's place, inside the result.
    pending = service.evaluate(text="apple banana", profiles=["kind", "huge"])["verdicts"]
    assert pending["kind"]["label"] == "fruit"
    assert pending["huge"]["label"] is None and pending["huge"]["unsure"] is True
    assert re.fullmatch(r"fitting, ready in about \d+ s", pending["huge"]["fitting"])
    everything = service.evaluate(text="apple banana")
    assert set(everything["verdicts"]) == {"kind"} and everything["fitting"] == ["huge"]
    status = service.status()["profiles"]
    assert status["kind"] == {"ready": True} and status["huge"]["ready"] is False
    embedder.gate.set()
    assert service.fitted_profile("huge").n == 3000
    service.close()


class SerialLoggingEmbedder(HashingEmbedder):
    """Runs one batch at a time like the real models and logs each batch's first text; a batch containing `hold`
    waits for `release` (once `holding` is set)."""

    def __init__(self, hold: str):
        super().__init__()
        self.hold, self.lock, self.log = hold, threading.Lock(), []
        self.holding, self.release = threading.Event(), threading.Event()

    def embed(self, texts):
        with self.lock:
            if any(self.hold in t for t in texts) and not self.release.is_set():
                self.holding.set()
                assert self.release.wait(60)
            self.log.append(texts[0])
            return super().embed(texts)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


def test_a_call_embeds_ahead_of_a_profiles_bulk_embedding():
    # A large profile's exemplars are embedded in the background; a verdict's text waits for the one chunk that is
    # running, not behind the rest (before: 0.3-0.9 s per verdict behind a 15k-exemplar profile's embedding).
    inner = SerialLoggingEmbedder(hold="exemplar 0 ")
    cached = CachedEmbedder(inner, capacity=0, background_chunk=8)
    bulk = threading.Thread(target=cached.embed_background, args=([f"exemplar {i} " for i in range(64)],))
    bulk.start()
    assert inner.holding.wait(60)  # the first chunk is in the model
    call = threading.Thread(target=cached.embed, args=(["a verdict's text"],))
    call.start()
    wait_until(lambda: cached._calls == 1)  # the call is waiting for the model
    inner.release.set()
    call.join(60)
    bulk.join(60)
    assert inner.log[:3] == ["exemplar 0 ", "a verdict's text", "exemplar 8 "] and len(inner.log) == 9


def test_startup_fits_a_small_profile_a_call_started_before_a_large_one(settings, fruit_tools_profile):
    # A call fits `kind` in its own thread; the startup thread must not start embedding `huge` meanwhile (the
    # small fit would share the cores with it: a first verdict took 16-19 s instead of a few on a loaded machine).
    write_profile(settings.user_profiles_dir, "huge", {"a": [f"huge alpha {i}" for i in range(200)], "b": ["x y"]})
    embedder = SerialLoggingEmbedder(hold="never")
    service = LatentService(settings, embedder=embedder)
    service.start(fit_profiles=False)
    kind = service.live["kind"]
    fitting, release = threading.Event(), threading.Event()
    real_fit = kind._fit

    def held_fit(*args, **kwargs):
        fitting.set()
        assert release.wait(60)
        return real_fit(*args, **kwargs)

    kind._fit = held_fit
    huge_started_with_kind_ready = []
    real_embed = embedder.embed

    def logging_embed(texts):
        if any("huge" in t for t in texts) and not huge_started_with_kind_ready:
            huge_started_with_kind_ready.append(kind.ready)
        return real_embed(texts)

    embedder.embed = logging_embed
    by_call = threading.Thread(target=kind.ensure_fitted)
    by_call.start()
    assert fitting.wait(60)  # the call's fit of `kind` has embedded its exemplars and is fitting
    startup = threading.Thread(target=service._fit_profiles)
    startup.start()
    time.sleep(0.5)  # room for a startup thread without the ordering to go on to `huge` (the assertion holds anyway)
    release.set()
    by_call.join(60)
    startup.join(120)
    assert huge_started_with_kind_ready == [True] and service.live["huge"].ready
    service.close()


def test_fit_cache_cleanup_keeps_other_profiles_fits(settings, fake_embedder, fruit_tools_profile):
    write_profile(
        settings.user_profiles_dir, "kind-v2", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0"
    )
    service = started(settings, fake_embedder)
    folder = service.fitter.cache_dir
    assert len(list(folder.glob("kind-v2-*.fit.npz"))) == 1
    service.teach("kind", "fruit", text="papaya guava")
    for _ in range(3):  # grow `kind` past the recalibration share: its refit saves a new fit, drops its old one
        service.teach("kind", "fruit", text=f"passion fruit kiwi {_}")
    assert service.wait_refitted(60)
    assert len(list(folder.glob("kind-v2-*.fit.npz"))) == 1  # `kind-*` used to match `kind-v2-...` too
    service.close()


def test_a_cold_start_profile_abstains_until_taught_then_answers(settings, fake_embedder):
    write_profile(
        settings.user_profiles_dir,
        "cold",
        {},
        extra=(
            'min_similarity = -1.0\n[[labels]]\nname = "fruit"\ndescription = "edible"\n'
            '[[labels]]\nname = "tools"\ndescription = "hardware"'
        ),
    )
    service = started(settings, fake_embedder)
    first = service.evaluate(text="apple banana", profiles=["cold"])["verdicts"]["cold"]
    assert first["unsure"] and first["label"] is None
    for fruit, tool in zip(FRUIT[:8], TOOLS[:8], strict=True):
        service.teach("cold", "fruit", text=fruit)
        service.teach("cold", "tools", text=tool)
    assert service.wait_refitted(60)
    verdict = service.evaluate(text="apple banana cherry fruit", profiles=["cold"])["verdicts"]["cold"]
    assert verdict["label"] == "fruit"
    service.close()


def test_savings_are_counted_per_profile(service):
    service.evaluate(text="apple banana cherry", profiles=["kind"])
    handle = service.handoff("hammer wrench screwdriver", evaluate=["kind"])["handle"]
    assert service.teach("kind", "tools", handle=handle)["taught"]["kind"]["agreed"] is True
    assert service.teach("kind", "fruit", text="hammer wrench pliers")["taught"]["kind"]["agreed"] is False
    stats = service.profile_stats()["stats"]["kind"]
    assert {k: stats[k] for k in ("answered", "escalated", "taught", "agreed", "disagreed")} == {
        "answered": 2,
        "escalated": 0,
        "taught": 2,
        "agreed": 1,
        "disagreed": 1,
    }
    assert stats["escalation_rate"] == 0.0 and stats["agreement"] == 0.5


def test_exemplar_rows_are_shared_safely_between_snapshots():
    x = np.eye(4, dtype=np.float32)
    spec = evaluator.ProfileSpec.model_validate(
        {"name": "s", "labels": [{"name": "a", "examples": ["x"]}, {"name": "b", "examples": ["y"]}]}
    )
    first = evaluator.FittedProfile.fit(spec, x[:2], ["a0", "b0"], np.array([0, 1]))
    second = first.with_exemplars(x[2:3], [0], ["a1"])
    branch = first.with_exemplars(x[3:4], [1], ["b1"])  # from an older snapshot: must not overwrite row 2
    assert second.texts == ["a0", "b0", "a1"] and branch.texts == ["a0", "b0", "b1"]
    np.testing.assert_array_equal(second.vectors[2], x[2])
    assert first.n == 2 and first.texts == ["a0", "b0"]


def test_a_fit_built_beside_the_profile_file_is_found_from_any_data_dir(settings, fruit_tools_profile, tmp_path):
    # `profiles build --out DIR` used to fit into its own data dir's cache only: a server elsewhere fitted again.
    from mcp_latent.profiles.fitter import ProfileFitter
    from mcp_latent.profiles.registry import ProfileRegistry

    profile = ProfileRegistry(settings.user_profiles_dir, include_builtin=False).load_all()["kind"]
    builder = ProfileFitter(tmp_path / "builder-data" / "cache", HashingEmbedder())
    fitted = builder.fitted(profile)
    builder.save("kind", builder.fit_key(profile.spec), fitted, folder=builder.beside(profile.path))
    embedder = HashingEmbedder()
    service = started(settings, embedder)  # another data dir: its own cache is empty
    assert embedder.calls == 0 and service.live["kind"].ready  # nothing embedded, nothing fitted
    service.close()


def test_a_recalibrations_rest_never_holds_back_the_head():
    # A recalibration of 30 s at a quarter of a core owed 90 s of rest, and every teach meanwhile only nudged the
    # head: on a loaded machine the HWU64 stream was answered from nudged heads most of the time (worse p, more
    # escalations). Head refits now rest in proportion to their own cost; a recalibration waits for all of it.
    from mcp_latent.service.refit_pacer import REFIT_DEBOUNCE_SECONDS, RefitPacer

    pacer = RefitPacer(cpu_share=0.25)
    assert pacer.wait(0.0, teaches_pending=True, recalibration_due=True) == 0.0  # nothing owed yet: recalibrate
    pacer.done(started=0.0, ended=30.0, recalibrated=True)  # 90 s of rest owed
    assert not pacer.may_recalibrate(31.0)
    assert pacer.wait(31.0, teaches_pending=True, recalibration_due=True) == 0.0  # a head refit at once
    pacer.done(started=31.0, ended=31.5, recalibrated=False)  # a head refit of 0.5 s owes 1.5 s more
    assert pacer.wait(32.0, teaches_pending=True, recalibration_due=True) == pytest.approx(1.0)
    assert pacer.wait(32.0, teaches_pending=False, recalibration_due=True) == pytest.approx(121.5 - 32.0)
    assert pacer.may_recalibrate(121.5) and pacer.wait(121.5, False, True) == 0.0
    assert pacer.wait(121.5, teaches_pending=False, recalibration_due=False) is None  # nothing to do: the thread ends
    pacer.done(
        started=200.0, ended=200.01, recalibrated=False
    )  # a very cheap refit still rests the debounce before the next
    assert pacer.wait(200.01, True, False) == pytest.approx(REFIT_DEBOUNCE_SECONDS)


def test_a_profile_that_cannot_cross_validate_is_not_recalibrated_again_without_new_exemplars(settings, fake_embedder):
    # A recalibration is due while the calibration was never cross-validated; without the guard the refit thread,
    # which now also wakes for a due recalibration, would refit such a profile forever.
    write_profile(settings.user_profiles_dir, "pair", {"yes": ["sure thing"], "no": ["no way"]})
    service = started(settings)
    live = service.live["pair"]
    service.teach("pair", "yes", text="absolutely, go ahead")
    assert service.wait_refitted(60)
    refits = live.refits
    assert live.snapshot.calibration.cv_accuracy is None  # one exemplar per label too few to cross-validate
    time.sleep(0.5)
    assert live.refits == refits and live._refit_thread is None
    service.close()


def test_a_taught_text_marks_whether_its_earlier_verdict_was_right(settings, fruit_tools_profile):
    # The stream threshold counts a verdict whose text was taught since as what the teach showed, not as its p.
    service = started(settings)
    live = service.live["kind"]
    texts = ["a ripe banana split", "a rusty old hammer", "a crisp green apple"]
    made = [service.handoff(text, evaluate=["kind"]) for text in texts]
    best = [live.snapshot.verdict(HashingEmbedder().embed([t])[0]).best for t in texts]
    service.teach("kind", best[0], handle=made[0]["handle"])  # the verdict's best label was the one taught
    service.teach("kind", "tools" if best[1] == "fruit" else "fruit", handle=made[1]["handle"])  # it was not
    p, right = live.stream.verdicts()
    assert len(p) == 3 and right[0] == 1.0 and right[1] == 0.0 and np.isnan(right[2])
    service.teach("kind", best[1], handle=made[1]["handle"])  # a second teach of the text changes nothing
    assert live.stream.verdicts()[1][1] == 0.0
    service.close()
