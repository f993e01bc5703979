"""hnswlib quirks handled in one place."""

import numpy as np
import pytest

from mcp_latent.errors import StoreError
from mcp_latent.store.vector_index import VectorIndex


def unit(rows, dim=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_grows_past_initial_capacity_and_finds_exact_match():
    index = VectorIndex(8, capacity=16)
    vectors = unit(500)
    index.add(np.arange(500), vectors)
    labels, sims = index.search(vectors[321], 5)
    assert labels[0] == 321 and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(sims <= 1.0) and np.all(np.diff(sims) <= 1e-6)


def test_k_larger_than_count_and_empty_index():
    index = VectorIndex(8)
    assert len(index.search(unit(1)[0], 3)[0]) == 0
    index.add([1, 2], unit(2))
    assert len(index.search(unit(1, seed=3)[0], 10)[0]) == 2


def test_deleted_labels_never_come_back_even_after_save_and_load(tmp_path):
    index = VectorIndex(8)
    vectors = unit(40)
    index.add(np.arange(40), vectors)
    index.delete([0, 1, 2])
    assert 0 not in index.search(vectors[0], 40)[0]
    index.save(tmp_path / "i.hnsw")
    loaded = VectorIndex.load(tmp_path / "i.hnsw", 8, 16, 200, 64)
    assert len(loaded) == 37 and 1 not in loaded.search(vectors[1], 37)[0]


def test_wrong_dimension_is_a_store_error():
    with pytest.raises(StoreError, match="dimension"):
        VectorIndex(8).add([1], np.ones((1, 4), dtype=np.float32))
