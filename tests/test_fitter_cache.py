"""The exemplar-vector cache: every text is embedded once, whatever bytes its key happens to hold."""

import hashlib
import threading
from itertools import count

import numpy as np
from conftest import HashingEmbedder

from mcp_latent.profiles.fitter import ExemplarVectors


class CountingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__()
        self.texts = 0

    def embed(self, texts):
        self.texts += len(texts)
        return super().embed(texts)


def digest_ending_in_nul() -> str:
    # 1 text in 256 has a SHA-1 ending in 0x00: fixed-width numpy bytes used to drop that byte on save.
    return next(t for t in (f"text {i}" for i in count()) if hashlib.sha1(t.encode()).digest()[-1] == 0)


def test_cached_texts_are_never_embedded_again(tmp_path):
    texts = ["plain text", digest_ending_in_nul(), "plain text"]
    embedder = CountingEmbedder()
    cache = ExemplarVectors(tmp_path / "p.exemplars.npz")
    first = cache.lookup(texts, embedder)
    assert embedder.texts == 2  # the repeated text is embedded once
    again = ExemplarVectors(tmp_path / "p.exemplars.npz").lookup(texts, embedder)
    assert embedder.texts == 2
    np.testing.assert_array_equal(first, again)


def test_cache_files_with_raw_digest_keys_still_hit(tmp_path):
    texts = ["plain text", digest_ending_in_nul()]
    embedder = CountingEmbedder()
    keys = np.array([hashlib.sha1(t.encode()).digest() for t in texts], dtype="S20")  # the old format
    np.savez(tmp_path / "p.exemplars.npz", keys=keys, vectors=embedder.embed(texts))
    ExemplarVectors(tmp_path / "p.exemplars.npz").lookup(texts, embedder)
    assert embedder.texts == 2  # only the two written above: nothing was re-embedded


def test_concurrent_writers_of_one_cache_file_never_collide(tmp_path):
    # Two servers on one data dir (or a server and its background recalibration) may save the same fit at once.
    path = tmp_path / "p.exemplars.npz"
    errors = []

    def write(worker):
        try:
            for i in range(25):
                ExemplarVectors(path)._save({f"{worker}-{i}": np.full(4, worker, dtype=np.float32)})
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with np.load(path) as data:
        assert data["vectors"].shape == (1, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["p.exemplars.npz"]  # no temporary file left behind
