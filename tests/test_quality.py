"""The evaluation harness's pieces whose answers are known: operating points, the calibration split of the
semantic-router baseline, and (where semantic-router is installed) that baseline itself."""

import numpy as np
import pytest

from mcp_latent.eval import semantic_router_baseline
from mcp_latent.eval.quality import expected_calibration_error, operating_point


def test_operating_point_counts_coverage_accuracy_and_out_of_scope_recall():
    in_scope = np.array([True, True, True, True, False, False])
    answered = np.array([True, True, True, False, True, False])
    correct = np.array([True, False, True, False, False, False])
    point = operating_point(answered, correct, in_scope)
    assert point == {"coverage": 0.75, "answered_accuracy": pytest.approx(2 / 3), "out_of_scope_recall": 0.5}
    closed = operating_point(answered[:4], correct[:4], in_scope[:4])
    assert closed["out_of_scope_recall"] is None


def test_expected_calibration_error_of_known_cases():
    p = np.full(100, 0.8)
    assert expected_calibration_error(p, np.arange(100) < 80) == pytest.approx(0.0)
    assert expected_calibration_error(p, np.arange(100) < 50) == pytest.approx(0.3)


def test_calibration_split_is_stratified_and_never_takes_a_whole_label():
    labels = np.repeat(np.arange(4), [10, 5, 2, 1])
    held = semantic_router_baseline._calibration_split(labels)
    assert [int(held[labels == i].sum()) for i in range(4)] == [2, 1, 1, 0]


def test_semantic_router_baseline_routes_on_our_vectors():
    pytest.importorskip("semantic_router")
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:3] * 3

    def sample(n, offset):
        x = np.concatenate([c + rng.normal(scale=1.2, size=(n, 16)) for c in centres])
        texts = [f"text {offset + i}" for i in range(len(x))]
        return texts, x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(3), n)

    texts, vectors, y = sample(20, 0)
    queries, query_vectors, truth = sample(10, 1000)
    routed = semantic_router_baseline.run(["a", "b", "c"], texts, y, vectors, queries, query_vectors)
    assert (routed["predicted"] == truth).mean() > 0.6  # chance is 1/3; overlap keeps calibration honest
    assert ((routed["confidence"] >= 0) & (routed["confidence"] <= 1)).all()


def test_engine_never_imports_the_harness_and_the_harness_uses_no_private_names():
    import ast

    from conftest import ROOT

    package = ROOT / "mcp_latent"
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        harness = path.parent.name == "eval"
        front_end = path.parent.name == "cli"  # `profiles eval` runs the harness; the command line is no engine
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [*(node.module or "").split("."), *(alias.name for alias in node.names)]
                assert harness or front_end or "eval" not in names, f"{path.name} imports the evaluation harness"
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert not (harness and private), f"{path.name} imports private {private}"
            if isinstance(node, ast.Attribute) and harness:
                assert not node.attr.startswith("_") or node.attr.startswith("__"), f"{path.name} uses .{node.attr}"


def test_the_harness_docstring_names_every_engine_module_it_uses():
    # It said "the public library API only (the service, FittedProfile.judge, decision.decide)" while importing
    # the ensemble, the fitter's cache, the builder and the settings too.
    import ast

    from conftest import ROOT

    import mcp_latent.eval

    said = " ".join(mcp_latent.eval.__doc__.split())
    used = set()
    for path in (ROOT / "mcp_latent" / "eval").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcp_latent."):
                used.add(node.module.removeprefix("mcp_latent."))
    assert used, "the harness imports nothing of the engine?"
    for module in used - {"eval.semantic_router_baseline", "eval.quality"}:
        assert f"`{module}`" in said, f"the harness uses {module} but its docstring does not say so"
