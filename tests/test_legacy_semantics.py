"""Operators at opsets 1-6 (1-7 for the variadic ones) follow that era's rules: no implicit
broadcasting without ``broadcast=1``, B broadcast to A only, per-channel PRelu slopes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux as ort


def _model(node, shapes: dict[str, list[int]], opset: int, inits=()):
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3
    return model


def test_prelu_slope_is_per_channel_before_opset_7() -> None:
    x = np.array([[[-1.0, 2.0], [-1.0, -2.0], [-4.0, 1.0]]], np.float32)  # (N=1, C=3, 2)
    slope = np.array([0.1, 0.2, 0.5], np.float32)
    model = _model(helper.make_node("PRelu", ["x", "s"], ["y"], name="prelu"), {"x": [1, 3, 2]}, 6,
                   [numpy_helper.from_array(slope, "s")])
    y = ort.InferenceSession(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, np.where(x < 0, x * slope[None, :, None], x))


def _binary(op: str, opset: int, a: list[int], b: list[int], **attrs):
    return _model(helper.make_node(op, ["a", "b"], ["y"], name="node", **attrs), {"a": a, "b": b}, opset)


def _feed(a: list[int], b: list[int]) -> dict:
    return {"a": np.ones(a, np.float32), "b": np.full(b, 2.0, np.float32)}


@pytest.mark.parametrize(
    "op, opset, a, b, attrs",
    [
        ("Add", 6, [2, 3], [3], {}),  # no broadcast attribute: the shapes must match
        ("Mul", 6, [3], [2, 3], {"broadcast": 1}),  # B may not be larger than A
        ("Max", 6, [2, 3], [3], {}),  # variadic operators broadcast from opset 8 only
        ("Sum", 7, [2, 3], [1, 3], {}),
    ],
)
def test_no_implicit_broadcasting_in_old_opsets(op, opset, a, b, attrs) -> None:
    session = ort.InferenceSession(_binary(op, opset, a, b, **attrs))
    with pytest.raises(ort.RuntimeFailure, match=r"node 'node'.*shape"):
        session.run(None, _feed(a, b))


@pytest.mark.parametrize("op, opset, expected", [("Add", 6, 3.0), ("Max", 6, 2.0), ("Sum", 8, 3.0)])
def test_old_opsets_still_run_what_they_allow(op, opset, expected) -> None:
    attrs = {"broadcast": 1} if op == "Add" else {}
    b = [3] if op != "Max" else [2, 3]
    y = ort.InferenceSession(_binary(op, opset, [2, 3], b, **attrs)).run(None, _feed([2, 3], b))[0]
    assert y.shape == (2, 3) and np.all(y == expected)


def test_gemm_c_needs_broadcast_before_opset_7() -> None:
    def gemm(broadcast: int):
        node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="node", broadcast=broadcast)
        return _model(node, {"a": [2, 3], "b": [3, 4], "c": [4]}, 6)

    feed = {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 4), np.float32), "c": np.arange(4, dtype=np.float32)}
    with pytest.raises(ort.RuntimeFailure, match=r"node 'node'.*shape"):
        ort.InferenceSession(gemm(0)).run(None, feed)
    np.testing.assert_array_equal(ort.InferenceSession(gemm(1)).run(None, feed)[0], 3 + np.arange(4) + np.zeros((2, 1)))
