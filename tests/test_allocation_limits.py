"""Bounded allocation: a tensor the model asks for beyond session.max_tensor_bytes is refused before
it is allocated, with an error naming the node and the size."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import single_node_model
from onnx import ModelProto, TensorProto, helper, numpy_helper

import onnxmux as ort


def _limited(limit: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.max_tensor_bytes", str(limit))
    return options


def test_constant_of_shape_beyond_the_default_limit_is_refused() -> None:
    model = single_node_model("ConstantOfShape", [("s", TensorProto.INT64, [2])], [("y", TensorProto.FLOAT, None)])
    session = ort.InferenceSession(model)
    with pytest.raises(ort.RuntimeFailure, match=r"the_node.*4000000000000 bytes.*session.max_tensor_bytes"):
        session.run(None, {"s": np.array([10**6, 10**6], np.int64)})
    assert session.run(None, {"s": np.array([2, 3], np.int64)})[0].shape == (2, 3)


CASES = {
    "Expand": ([("x", TensorProto.FLOAT, [1]), ("s", TensorProto.INT64, [2])], {"x": np.ones(1, np.float32)},
               {"s": np.array([64, 64], np.int64)}, {"s": np.array([4, 4], np.int64)}, {}),
    "Tile": ([("x", TensorProto.FLOAT, [2]), ("r", TensorProto.INT64, [1])], {"x": np.ones(2, np.float32)},
             {"r": np.array([10_000], np.int64)}, {"r": np.array([3], np.int64)}, {}),
    "Range": ([("a", TensorProto.INT64, []), ("b", TensorProto.INT64, []), ("d", TensorProto.INT64, [])],
              {"a": np.array(0, np.int64), "d": np.array(1, np.int64)},
              {"b": np.array(10**6, np.int64)}, {"b": np.array(5, np.int64)}, {}),
    "Resize": ([("x", TensorProto.FLOAT, [1, 1, 2, 2]), ("roi", TensorProto.FLOAT, [0]), ("sc", TensorProto.FLOAT, [4])],
               {"x": np.ones((1, 1, 2, 2), np.float32), "roi": np.zeros(0, np.float32)},
               {"sc": np.array([1, 1, 100, 100], np.float32)}, {"sc": np.array([1, 1, 2, 2], np.float32)}, {}),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_growing_operators_respect_max_tensor_bytes(op: str) -> None:
    inputs, fixed, big, small, attrs = CASES[op]
    model = single_node_model(op, inputs, [("y", TensorProto.FLOAT if op != "Range" else TensorProto.INT64, None)], **attrs)
    session = ort.InferenceSession(model, _limited(4096))
    with pytest.raises(ort.RuntimeFailure, match=rf"node 'the_node' \({op}.*bytes.*over session.max_tensor_bytes=4096"):
        session.run(None, {**fixed, **big})
    assert session.run(None, {**fixed, **small})[0].size > 0


def _sparse_model(dims: list[int]) -> ModelProto:
    values = numpy_helper.from_array(np.array([1.0], np.float32), "w")
    indices = numpy_helper.from_array(np.array([0], np.int64), "w_indices")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_sparse_densification_respects_max_tensor_bytes() -> None:
    with pytest.raises(ort.InvalidGraph, match=r"sparse tensor 'w'.*1600000000 bytes.*session.max_tensor_bytes"):
        ort.InferenceSession(_sparse_model([20000, 20000]), _limited(1 << 20))
    assert ort.InferenceSession(_sparse_model([4, 4]), _limited(1 << 20)).run(None, {})[0].sum() == 1.0


@pytest.mark.parametrize("value", ["lots", "0", "-1"])
def test_max_tensor_bytes_must_be_a_positive_number(value: str) -> None:
    model = single_node_model("Relu", [("x", TensorProto.FLOAT, [1])], [("y", TensorProto.FLOAT, [1])])
    with pytest.raises(ort.InvalidArgument, match="session.max_tensor_bytes"):
        ort.InferenceSession(model, _limited(value))
