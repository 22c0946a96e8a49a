"""Bad models and bad values of the richer types: clear onnxmux errors naming what is wrong."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from helpers import single_node_model
from onnx import TensorProto, helper

import onnxmux


def test_op_version_the_runtime_lacks() -> None:
    # Gelu exists from opset 20; at opset 17 its name is unknown to the standard domain.
    model = single_node_model("Gelu", [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])], opset=17)
    with pytest.raises(onnxmux.UnsupportedOperator) as info:
        onnxmux.InferenceSession(model)
    message = str(info.value)
    assert "the_node" in message and "Gelu" in message and "opset 17" in message and "versions [20]" in message


def test_map_fed_where_a_tensor_is_declared() -> None:
    model = single_node_model("Relu", [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])])
    session = onnxmux.InferenceSession(model)
    with pytest.raises(onnxmux.InvalidArgument, match=r"input 'x': expected tensor\(float\), got dict"):
        session.run(None, {"x": {1: 2.0}})
    assert session.run(None, {"x": np.array([-1.0, 2.0], np.float32)})[0].tolist() == [0.0, 2.0]


def test_tensor_fed_where_a_map_is_declared() -> None:
    map_type = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    node = helper.make_node("DictVectorizer", ["m"], ["y"], domain="ai.onnx.ml", int64_vocabulary=[1, 2])
    graph = helper.make_graph(
        [node], "dv", [helper.make_value_info("m", map_type)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    session = onnxmux.InferenceSession(model)
    assert session.get_inputs()[0].type == "map(int64,tensor(float))"
    with pytest.raises(onnxmux.InvalidArgument, match=r"input 'm': expected map\(int64,tensor\(float\)\)"):
        session.run(None, {"m": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(session.run(None, {"m": {2: 5.0}})[0], [[0.0, 5.0]])


@pytest.mark.parametrize(
    ("elem", "dtype"),
    [
        (TensorProto.BFLOAT16, ml_dtypes.bfloat16),
        (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
        (TensorProto.INT4, ml_dtypes.int4),
        (TensorProto.FLOAT16, np.float16),
    ],
)
def test_low_precision_types_cross_the_api_as_ml_dtypes(elem: int, dtype) -> None:
    model = single_node_model("Identity", [("x", elem, [3])], [("y", elem, [3])], opset=21)
    session = onnxmux.InferenceSession(model)
    x = np.array([1, -2, 3], dtype=dtype)
    (y,) = session.run(None, {"x": x})
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y.astype(np.float32), x.astype(np.float32))
    with pytest.raises(onnxmux.InvalidArgument, match="input 'x'"):
        session.run(None, {"x": x.astype(np.float32)})


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_on_an_empty_batch(kernel: int) -> None:
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 3, kernel, kernel], [1.0] * (6 * kernel * kernel))],
    )
    session = onnxmux.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    (y,) = session.run(None, {"x": np.zeros((0, 3, 5, 5), np.float32)})
    assert y.shape == (0, 2, 6 - kernel, 6 - kernel)
