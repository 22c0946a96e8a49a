"""Long list attributes read in bulk (onnxmux/core/bulk_attrs.py) and the tree tables built from them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxmux
from onnxmux.core import bulk_attrs
from onnxmux.core.bulk_attrs import BulkAttr
from onnxmux.core.loader import load
from onnxmux.core.optimizer import save_optimized
from onnxmux.core.optimizer.basic import _cse_key

RNG = np.random.default_rng(7)
N_FEATURES = 4


def stump_forest(n_trees: int, **overrides) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray, np.ndarray]:
    """A TreeEnsembleRegressor of ``n_trees`` one-split trees (3 nodes each), with its features,
    thresholds and (low, high) leaf weights."""
    features = RNG.integers(0, N_FEATURES, n_trees)
    thresholds = RNG.standard_normal(n_trees).astype(np.float32)
    weights = RNG.standard_normal((n_trees, 2)).astype(np.float32)
    trees = np.repeat(np.arange(n_trees), 3)
    attrs = dict(
        nodes_treeids=trees.tolist(),
        nodes_nodeids=[0, 1, 2] * n_trees,
        nodes_featureids=np.stack([features, features * 0, features * 0], axis=1).ravel().tolist(),
        nodes_values=np.stack([thresholds, thresholds * 0, thresholds * 0], axis=1).ravel().tolist(),
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * n_trees,
        nodes_truenodeids=[1, 0, 0] * n_trees,
        nodes_falsenodeids=[2, 0, 0] * n_trees,
        target_treeids=np.repeat(np.arange(n_trees), 2).tolist(),
        target_nodeids=[1, 2] * n_trees,
        target_ids=[0, 0] * n_trees,
        target_weights=weights.ravel().tolist(),
        n_targets=1,
        aggregate_function="SUM",
    )
    attrs.update(overrides)
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node],
        "forest",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    return model, features, thresholds, weights


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return onnxmux.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]


def test_a_forest_read_in_bulk_predicts_what_its_trees_say() -> None:
    model, features, thresholds, weights = stump_forest(600)  # 1,800 nodes: every nodes_* list is long
    loaded = load(model.SerializeToString()).model
    attributes = next(iter(loaded.graph)).attributes
    assert isinstance(attributes["nodes_treeids"], BulkAttr) and isinstance(attributes["nodes_modes"], BulkAttr)
    assert attributes["nodes_modes"].value[:3] == ("BRANCH_LEQ", "LEAF", "LEAF")
    x = RNG.standard_normal((9, N_FEATURES)).astype(np.float32)
    expected = np.where(x[:, features] <= thresholds, weights[:, 0], weights[:, 1]).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(run(model, x)[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_bulk_and_item_by_item_reading_agree(monkeypatch) -> None:
    model, *_ = stump_forest(400)
    x = RNG.standard_normal((5, N_FEATURES)).astype(np.float32)
    bulk = run(model, x)
    monkeypatch.setattr(bulk_attrs, "BULK_ITEMS", 10**9)
    assert not any(isinstance(a, BulkAttr) for a in next(iter(load(model.SerializeToString()).model.graph)).attributes.values())
    np.testing.assert_array_equal(run(model, x), bulk)


def test_a_saved_model_keeps_the_long_lists(tmp_path) -> None:
    model, *_ = stump_forest(400)
    loaded = load(model.SerializeToString()).model
    path = tmp_path / "saved.onnx"
    save_optimized(loaded, str(path))
    saved = {a.name: a for a in onnx.load(str(path)).graph.node[0].attribute}
    original = {a.name: a for a in model.graph.node[0].attribute}
    for name in ("nodes_treeids", "nodes_values", "nodes_modes", "target_weights"):
        assert saved[name] == original[name], name


def test_equal_long_lists_give_equal_cse_keys() -> None:
    nodes = []
    for values in (list(range(2000)), list(range(2000)), [*range(1999), 5]):
        node = helper.make_node("Constant", [], ["c"], value_ints=values)
        graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("c", TensorProto.INT64, [2000])])
        nodes.append(next(iter(load(helper.make_model(graph)).model.graph)))
    assert all(isinstance(n.attributes["value_ints"], BulkAttr) for n in nodes)
    first, same, other = (_cse_key(n) for n in nodes)
    assert first == same and first != other


def test_a_long_constant_list_still_runs() -> None:
    node = helper.make_node("Constant", [], ["c"], value_floats=np.linspace(0, 1, 3000).tolist())
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3000])])
    session = onnxmux.InferenceSession(helper.make_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {})[0], np.linspace(0, 1, 3000).astype(np.float32))


def test_a_long_string_list_that_is_not_utf8_is_invalid_graph() -> None:
    model, *_ = stump_forest(400)
    modes = next(a for a in model.graph.node[0].attribute if a.name == "nodes_modes")
    modes.strings[5] = b"LE\xffF"
    with pytest.raises(onnxmux.InvalidGraph, match="nodes_modes"):
        run(model, np.zeros((1, N_FEATURES), np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(nodes_nodeids=[0, 0, 2] * 3), r"\(tree id, node id\) pair appears twice"),
        (dict(target_nodeids=[1, 7] + [1, 2] * 2), r"\(tree id, node id\) \(0, 7\) does not exist"),
        (dict(nodes_truenodeids=[1, 0, 0, 9, 0, 0, 1, 0, 0]), r"\(tree id, node id\) \(1, 9\) does not exist"),
        (dict(nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_SOMETIMES", "LEAF", "LEAF"] + ["BRANCH_LEQ", "LEAF", "LEAF"]),
         r"unknown nodes_modes \['BRANCH_SOMETIMES'\]"),
    ],
)
def test_malformed_tree_tables_are_named(change: dict, message: str) -> None:
    model, *_ = stump_forest(3, **change)
    with pytest.raises(onnxmux.InvalidGraph, match=message):
        run(model, np.zeros((1, N_FEATURES), np.float32))


def test_node_tables_in_any_order_predict_the_same() -> None:
    """Converters list each tree's nodes together, numbered in order (looked up by position);
    any other order is looked up by sorted keys, with the same result."""
    model, *_ = stump_forest(50)
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    node = shuffled.graph.node[0]
    order = RNG.permutation(150)
    for attr in node.attribute:
        if attr.name.startswith("nodes_"):
            values = list(attr.ints) or list(attr.floats) or list(attr.strings)
            permuted = [values[i] for i in order]
            for field in ("ints", "floats", "strings"):
                if len(getattr(attr, field)):
                    del getattr(attr, field)[:]
                    getattr(attr, field).extend(permuted)
    x = RNG.standard_normal((6, N_FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(run(shuffled, x), run(model, x))


def _forest(children: list[tuple[int, int]], leaf_targets: dict[int, int]):
    """A two-tree _Forest (roots 0 and 2) whose leaves each weigh one target."""
    from onnxmux.providers.cpu.ops.ml_trees import _LEAF, _LEQ, _Forest

    n = len(children)
    mode = np.array([_LEAF if i in leaf_targets else _LEQ for i in range(n)])
    count = np.array([int(i in leaf_targets) for i in range(n)])
    return _Forest(
        roots=np.array([0, 2]),
        children=np.array([c if i not in leaf_targets else (i, i) for i, c in enumerate(children)]).ravel(),
        feature=np.zeros(n, np.int64), threshold=np.zeros(n), mode=mode, nan_true=np.zeros(n, bool), members=None,
        depth=1, first=np.cumsum(count) - count, count=count,
        target=np.array([leaf_targets[i] for i in sorted(leaf_targets)]), weight=np.ones(len(leaf_targets)),
    )  # fmt: skip


@pytest.mark.parametrize("shared", [False, True], ids=["tree_walk_in_bulk", "node_reached_twice"])
def test_targets_every_row_reaches_are_found_with_or_without_shared_nodes(shared: bool) -> None:
    from onnxmux.providers.cpu.ops.ml_trees import _same_reach

    first_tree = (1, 1) if shared else (1, 5)  # node 0's two branches lead to one leaf when shared
    same = _forest([first_tree, (0, 0), (3, 4), (0, 0), (0, 0), (0, 0)], {1: 0, 3: 1, 4: 1, 5: 0})
    differ = _forest([first_tree, (0, 0), (3, 4), (0, 0), (0, 0), (0, 0)], {1: 0, 3: 0, 4: 1, 5: 0})
    assert _same_reach(same, 2).tolist() == [True, True]
    assert _same_reach(differ, 2) is None
