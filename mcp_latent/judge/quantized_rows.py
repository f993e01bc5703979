"""Exact neighbours of one query that read a quarter of the memory: an int8 copy of the exemplars bounds every row's
similarity, and only the rows whose bound reaches the k-th best are scored in float32.

Why: a first verdict is memory traffic, not arithmetic. One query's exact neighbours read all of a profile's
exemplar vectors (2,600-2,900 rows, 4 MB of float32 for a shipped profile), which the server's other calls have
evicted from the CPU's caches: 0.5-0.7 ms of CPU, against 0.1-0.2 ms when they are cached. An int8 copy is 1 MB;
onnxruntime's integer product (u8 x s8, int32 sums: no rounding) reads it in about a third of the time.

Exact, not approximate: with x^ = the row's int8 values times its scale and q^ likewise for the query,
|q.x - q^.x^| <= |q - q^| |x| + |q^| |x - x^| (Cauchy-Schwarz on the two rounding errors; plus 1e-5 for float
rounding). The k-th largest lower bound is at most the k-th best similarity, so a row whose upper bound is below it
cannot be among the k nearest; the others (17 rows at the median, at most 47, for the shipped profiles on the
held-out proposals) are scored with the float32 product, so the top k are the full product's rows. Their
similarities come from a product over the gathered rows, which may differ from the full product's in the last bits
(at most 1.8e-7 seen): decisions are the same, p within 1e-6 (`tests/test_verdict_cost.py`).

Ownership: a `QuantizedRows` is immutable once built (its onnxruntime session is safe to run from several threads);
`exemplar_rows.ExemplarRows` builds it once per storage on a background thread (30-70 ms: not on a verdict's path;
verdicts read the float32 product meanwhile) and shares it with grown copies."""

from __future__ import annotations

import numpy as np

from mcp_latent.judge.ensemble import top_of_row

# Below this many exemplars the float32 product is cheap (under ~130 KB read) and the copy is not worth keeping.
MIN_ROWS = 512
SLACK = 1e-5  # float32 rounding of the similarities compared (each ~1e-7) and of the bound's own arithmetic


class QuantizedRows:
    """An int8 copy of exemplar rows [0, m) of a storage (one scale per row), and an onnxruntime graph that, for one
    query, quantizes it, takes the integer product, bounds every row's similarity and returns the rows that may be
    among the k nearest (one run: each numpy call on a cold cache costs about as much as the product)."""

    def __init__(self, vectors: np.ndarray):
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        vectors = np.asarray(vectors, dtype=np.float32)
        self.rows, dim = vectors.shape
        largest = np.abs(vectors).max(axis=1).astype(np.float64)
        scale = np.where(largest > 0, largest / 127.0, 1.0)
        ints = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        wide = vectors.astype(np.float64)
        error = np.linalg.norm(wide - ints * scale[:, None], axis=1)  # |x - x^| per row
        constants = {
            "rows": np.ascontiguousarray(ints.T),
            "row_scale": scale.astype(np.float32)[None, :],
            "row_norm": np.linalg.norm(wide, axis=1).astype(np.float32)[None, :],
            "row_error": error.astype(np.float32)[None, :],
            "slack": np.array(SLACK, dtype=np.float32),
            "no_axes": np.array([1], dtype=np.int64),
        }

        def node(op: str, inputs: list[str], outputs: list[str], **attributes) -> object:
            return helper.make_node(op, inputs, outputs, **attributes)

        nodes = [
            node("DynamicQuantizeLinear", ["q"], ["q8", "q_step", "q_zero"]),  # q^ = (q8 - q_zero) * q_step
            node("MatMulInteger", ["q8", "rows", "q_zero"], ["sums"]),  # exact int32 sums
            node("Cast", ["sums"], ["sums_f"], to=TensorProto.FLOAT),
            node("Mul", ["sums_f", "q_step"], ["sums_scaled"]),
            node("Mul", ["sums_scaled", "row_scale"], ["approx"]),  # q^.x^
            node("DequantizeLinear", ["q8", "q_step", "q_zero"], ["q_hat"]),
            node("Sub", ["q", "q_hat"], ["q_off"]),
            node("ReduceL2", ["q_off"], ["q_error"], keepdims=1),  # |q - q^|
            node("ReduceL2", ["q_hat"], ["q_hat_norm"], keepdims=1),  # |q^|
            node("Mul", ["row_norm", "q_error"], ["term1"]),
            node("Mul", ["row_error", "q_hat_norm"], ["term2"]),
            node("Add", ["term1", "term2"], ["margin0"]),
            node("Add", ["margin0", "slack"], ["margin"]),
            node("Add", ["approx", "margin"], ["upper"]),
            node("Sub", ["approx", "margin"], ["lower"]),
            node("TopK", ["lower", "k"], ["lower_best", "lower_best_ids"], axis=1),
            node("ReduceMin", ["lower_best"], ["floor"], keepdims=1),  # <= the k-th best similarity
            node("GreaterOrEqual", ["upper", "floor"], ["maybe"]),
            node("Squeeze", ["maybe", "no_axes_0"], ["maybe_row"]),
            node("NonZero", ["maybe_row"], ["candidates"]),
        ]
        constants["no_axes_0"] = np.array([0], dtype=np.int64)
        del constants["no_axes"]
        graph = helper.make_graph(
            nodes,
            "exemplar_bounds",
            [
                helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, dim]),
                helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
            ],
            [helper.make_tensor_value_info("candidates", TensorProto.INT64, [1, None])],
            [numpy_helper.from_array(value, name) for name, value in constants.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one query's product: a thread pool would only wait for a core
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def nearest(self, query: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The exact nearest `k` rows of `pool` (n, d), n >= `rows` (rows past them, taught since, are scored in
        float32) for one query (1, d): (ids, similarities), each (1, k), best first; None when k > `rows`."""
        if k > self.rows:
            return None
        ids = self._session.run(None, {"q": query, "k": np.array([k], dtype=np.int64)})[0][0]
        if len(ids) < k:  # a query the bound cannot read (all zeros: no quantization step; NaN)
            return None
        if len(pool) > self.rows:  # rows taught after the copy was made
            ids = np.concatenate([ids, np.arange(self.rows, len(pool))])
        top, sims = top_of_row(pool[ids] @ query[0], k)
        return ids[top[0]][None, :], sims
