"""What a long-running server keeps in memory stays small and bounded (docs/load-and-faults.md, "Soak")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from mcp_latent.embedding.base import CachedEmbedder
from mcp_latent.service import maintenance as maintenance_module
from mcp_latent.service.heap_trim import can_release
from mcp_latent.service.maintenance import StoreMaintenance
from mcp_latent.service.stream_record import StreamRecord


def unit_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_full_stream_window_costs_little_per_verdict():
    # Keyed by the vector's 1,536 bytes, a full window of 1,000 verdicts held 1.6 MB per profile: most of a soak's
    # growth after its first minute. Keyed by a 16-byte digest it is a tenth of that.
    vectors = unit_vectors(1000)
    record = StreamRecord(window=1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for vector in vectors:
            record.observe(vector, 0.8, True, "yes")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / len(vectors) < 400, f"{held / len(vectors):.0f} bytes per recorded verdict"


def test_the_stream_window_still_knows_a_text_by_its_vector():
    vectors = unit_vectors(3)
    record = StreamRecord(window=2)
    record.observe(vectors[0], 0.9, True, "yes")
    record.observe(vectors[0].copy(), 0.1, True, "no")  # the same text judged again counts once
    record.observe(vectors[1], 0.7, True, "yes")
    record.taught(vectors[1].copy(), "no", (0.7, "yes"), answered=True)  # a teach finds its verdict by vector
    p, right = record.verdicts()
    assert p.tolist() == pytest.approx([0.9, 0.7]) and np.isnan(right[0]) and right[1] == 0.0
    record.observe(vectors[2], 0.6, True, "yes")  # the window drops the oldest
    assert record.verdicts()[0].tolist() == pytest.approx([0.7, 0.6])
    record.unlabel([vectors[1]])
    assert np.isnan(record.verdicts()[1]).all()


@pytest.mark.skipif(not can_release(), reason="glibc's malloc_trim only")
def test_release_free_memory_gives_freed_heap_pages_back():
    # In a fresh process: 64 KB blocks each pinned by a small block after it, then the big ones freed. glibc keeps
    # holes in the middle of its heap resident; release_free_memory hands them back.
    script = textwrap.dedent(
        """
        from mcp_latent.service.heap_trim import release_free_memory

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024

        big, pins = [], []
        for _ in range(1200):
            big.append(bytearray(64 * 1024))
            pins.append(bytearray(600))
        del big
        held = rss()
        release_free_memory()
        print(held, rss())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    held, after = map(float, done.stdout.split())
    assert held - after > 40, f"RssAnon {held:.1f} MB before the trim, {after:.1f} MB after"


class QuietStore:
    """The two reads StoreMaintenance makes, answering that nothing changed."""

    def changes(self, after):
        from types import SimpleNamespace

        return SimpleNamespace(profiles=set(), reverted=set(), cursor=after)

    def retention(self, max_records, ttl_seconds):
        return {}


@pytest.mark.parametrize("trim", [True, False])
def test_maintenance_trims_memory_after_retention_when_set(monkeypatch, trim):
    calls = []
    monkeypatch.setattr(maintenance_module, "release_free_memory", lambda: calls.append(1) or True)
    upkeep = StoreMaintenance(QuietStore(), lambda new: None, taught_after=0, trim_memory=trim)
    upkeep.run_once()
    upkeep.run_once()  # retention (and the trim) is not due again for a minute
    assert len(calls) == (1 if trim else 0)


RESIDENT_SCRIPT = textwrap.dedent(
    """
    from mcp_latent.embedding.factory import load_configured_embedder
    from mcp_latent.settings import Settings

    embedder = load_configured_embedder(Settings())
    embedder.embed(["a few words"])
    prefix = str(embedder.directory.resolve()) + "/"
    size = rss = 0
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and ":" not in head[0]:
            inside = len(head) > 5 and head[5].startswith(prefix)
        elif inside and head[0] == "Size:":
            size += int(head[1])
        elif inside and head[0] == "Rss:":
            rss += int(head[1])
    print(size, rss)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps")
@pytest.mark.parametrize("resident", [None, "false"])
def test_the_model_weights_are_resident_from_the_start(resident):
    # The soak's RssFile grew 13.8 MB in 30 minutes: ONNX Runtime reads the word-embedding table from the mapped
    # weights file a row per token, so every new word paged more of it in. With the default setting the whole
    # mapping is resident once the model is loaded; turned off, a first text touches only a few of its pages.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env["MCP_LATENT_EMBED_BACKEND"] = "onnx"
    if resident is not None:
        env["MCP_LATENT_ONNX_RESIDENT_WEIGHTS"] = resident
    done = subprocess.run(
        [sys.executable, "-c", RESIDENT_SCRIPT], capture_output=True, text=True, timeout=300, env=env, check=True
    )
    size_kb, rss_kb = map(int, done.stdout.split())
    assert size_kb > 40_000, f"only {size_kb} KB of the model are mapped: is the weights file mapped at all?"
    if resident is None:
        assert rss_kb > 0.95 * size_kb, f"{rss_kb} of {size_kb} KB of the mapped model resident after loading"
    else:
        assert rss_kb < 0.5 * size_kb, f"{rss_kb} of {size_kb} KB resident without the setting"


class CountingEmbedder:
    """Deterministic unit vectors per text (from its hash); counts the texts it was asked to embed."""

    model_id = "test/counting"
    dim = 384

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded += texts
        return np.stack([unit_vectors(1, seed=abs(hash(t)) % 2**32)[0] for t in texts])


def test_the_embedding_cache_holds_its_bound_from_the_start():
    # Each cached vector was its own numpy array (1.6 KB with its header), allocated as texts arrived: the soak's
    # RssAnon grew 7.8 MB as the cache filled (full only after 20 minutes), and each eviction freed a 1.5 KB block
    # into the middle of the heap. Now the rows are one block, allocated when the cache is made; filling the cache
    # (and evicting from it) adds only the index of texts.
    texts = [f"text number {i}" for i in range(2 * 4096)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cached = CachedEmbedder(CountingEmbedder(), capacity=4096)
        empty = tracemalloc.get_traced_memory()[0] - before
        for start in range(0, len(texts), 16):
            cached.embed(texts[start : start + 16])
        full = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert empty >= 4096 * 384 * 4, f"{empty / 2**20:.1f} MB when made: the rows are not allocated up front"
    assert (full - empty) / 4096 < 500, f"{(full - empty) / 4096:.0f} bytes more per cached text once full"


def test_the_embedding_cache_is_still_least_recently_used():
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, capacity=3)
    for text in "abc":
        cached.embed([text])
    first = {text: cached.embed([text])[0] for text in "abc"}  # all hits
    assert inner.embedded == ["a", "b", "c"]
    cached.embed(["a"])  # a is now the most recent: b is the least
    fresh = cached.embed(["d", "a"])  # d takes b's row
    assert inner.embedded == ["a", "b", "c", "d"]
    again = cached.embed(["b", "c", "d"])  # b comes back in the row of a, now the least recent
    assert inner.embedded == ["a", "b", "c", "d", "b"]
    assert np.array_equal(fresh[1], first["a"]) and np.array_equal(again[0], first["b"])
    assert np.array_equal(again[1], first["c"]) and np.array_equal(again[2], fresh[0])
    assert np.array_equal(cached.embed(["a"])[0], first["a"])  # evicted, embedded again: the same vector
    assert (cached.hits, cached.misses) == (7, 6)


@pytest.mark.skipif(not can_release(), reason="glibc's mallopt only")
@pytest.mark.parametrize("fixed", [True, False])
def test_a_fixed_mmap_threshold_keeps_large_temporaries_out_of_the_heap(fixed):
    # glibc raises its mmap threshold to each large block freed, so the next few-MB temporary (a refit's arrays)
    # came from the heap and left it bigger: in the soak the heaps' free bytes grew 6.3 -> 8.8 MB in 4 minutes.
    script = textwrap.dedent(
        f"""
        import ctypes
        import numpy as np
        from mcp_latent.service.heap_trim import fix_mmap_threshold

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        if {fixed}:
            assert fix_mmap_threshold(128 * 1024)
        first = np.ones(1_000_000)  # 8 MB: mapped on its own, and freeing it moves glibc's threshold
        del first
        mapped = libc.mallinfo2().hblkhd
        second = np.ones(1_000_000)
        print(libc.mallinfo2().hblkhd - mapped)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    mapped = int(done.stdout)
    if fixed:
        assert mapped >= 8_000_000, f"the second 8 MB array came from the heap ({mapped} bytes newly mapped)"
    else:
        assert mapped == 0, "glibc's threshold no longer moves: this test no longer shows what the setting is for"


def test_the_service_fixes_the_mmap_threshold_from_its_setting(monkeypatch, settings, fake_embedder):
    from mcp_latent.service import lifecycle
    from mcp_latent.service.api import LatentService

    asked = []
    monkeypatch.setattr(lifecycle, "fix_mmap_threshold", asked.append)
    for kb in (128, 0):
        service = LatentService(settings.model_copy(update={"memory_mmap_threshold_kb": kb}), embedder=fake_embedder)
        service.start(fit_profiles=False)
        service.close()
    assert asked == [128 * 1024]
