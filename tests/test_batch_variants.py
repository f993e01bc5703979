"""tools/batch_variants.py's arithmetic: the matrix-product work it divides CPU time by (the README's GFLOP/s)."""

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))

from mcp_latent.embedding.model_source import resolve_model_source

SOURCE = Path(resolve_model_source("")[0])
pytestmark = pytest.mark.skipif(not (SOURCE / "config.json").is_file(), reason="the shipped model is not installed")


def test_matmul_work_of_one_text_is_dense_layers_plus_attention():
    import batch_variants
    from tokenizers import Tokenizer

    config = json.loads((SOURCE / "config.json").read_text())
    d, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    tokenizer = Tokenizer.from_file(str(SOURCE / "tokenizer.json"))
    tokenizer.no_padding()
    n = len(tokenizer.encode(batch_variants.PROPOSAL).ids)
    expected = n * layers * 2 * (4 * d * d + 2 * d * ff + 2 * n * d) / 1e9
    assert batch_variants.matmul_gflop([batch_variants.PROPOSAL]) == pytest.approx(expected)
    # runs of 16 texts sorted by length, each padded to its longest: the short text shares the first run with 15
    # long ones (padded to their length), the 16th long text runs alone
    two_runs = batch_variants.matmul_gflop([batch_variants.PROPOSAL] * 16 + ["hi"])
    assert two_runs == pytest.approx(17 * expected)
    assert batch_variants.matmul_gflop(["hi"] * 16) == pytest.approx(16 * batch_variants.matmul_gflop(["hi"]))
