"""The run path's shortcuts: feeds of the declared type pass unconverted while every other feed is
still converted or refused, and steps of no, one and several inputs and outputs read and write
their slots right."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxmux
from onnxmux.core.errors import InvalidArgument


def _session(nodes, inputs, outputs) -> onnxmux.InferenceSession:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return onnxmux.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())


def _identity(elem_type: int, shape) -> onnxmux.InferenceSession:
    return _session(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
    )


def test_feed_of_the_declared_type_is_used_as_is_and_others_are_converted() -> None:
    session = _identity(TensorProto.FLOAT, [2, "n"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)  # outputs never alias the caller's input
    (y,) = session.run(None, {"x": np.asfortranarray(x)})  # non-contiguous: made contiguous
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    (y,) = session.run(None, {"x": [[1, 2], [3, 4]]})  # a list takes the declared element type
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    "value, words",
    [
        (np.zeros((2, 3), np.float64), "expected tensor(float), got tensor(double)"),
        (np.zeros((3, 3), np.float32), "dimension 0 must be 2"),
        (np.zeros((2, 3, 1), np.float32), "expected rank 2"),
    ],
)
def test_feed_that_does_not_fit_is_refused(value, words) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(words)):
        _identity(TensorProto.FLOAT, [2, "n"]).run(None, {"x": value})


def test_string_input_refuses_a_float64_array_and_takes_bytes() -> None:
    session = _identity(TensorProto.STRING, [2])
    with pytest.raises(InvalidArgument, match="tensor\\(string\\)"):
        session.run(None, {"x": np.zeros(2, np.float64)})
    (y,) = session.run(None, {"x": np.array([b"a", b"bc"])})
    assert y.tolist() == ["a", "bc"]


def test_steps_of_every_arity() -> None:
    """A step of no input (Constant), one (Relu), three (Where) and two outputs (Split)."""
    session = _session(
        [
            helper.make_node("Constant", [], ["c"], value_float=0.5),
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Greater", ["x", "c"], ["mask"]),
            helper.make_node("Where", ["mask", "r", "c"], ["w"]),
            helper.make_node("Split", ["w"], ["a", "b"], axis=0, num_outputs=2),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "b")],
    )
    x = np.array([-1.0, 0.25, 2.0, 3.0], np.float32)
    for _ in range(2):
        a, b = session.run(None, {"x": x})
        np.testing.assert_array_equal(np.concatenate([a, b]), np.where(x > 0.5, np.maximum(x, 0), 0.5))
