"""Initializers built over the raw bytes that validation read (onnxmux/core/loader.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxmux.core.loader import load


def model_with(*tensors: onnx.TensorProto, opset: int = 17) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", [t.name], [f"{t.name}_out"]) for t in tensors]
    outputs = [helper.make_tensor_value_info(f"{t.name}_out", t.data_type, list(t.dims)) for t in tensors]
    graph = helper.make_graph(nodes, "g", [], outputs, list(tensors))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([1.5, -2.25, 65504], dtype=np.float16),
        np.array([[True, False], [False, True]]),
        np.arange(-4, 4, dtype=np.int8),
        np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    ],
    ids=["float32", "float16", "bool", "int8", "complex64"],
)
def test_initializers_are_arrays_over_the_validated_bytes(array: np.ndarray) -> None:
    tensor = numpy_helper.from_array(array, "w")
    tensor.doc_string = "the weights"
    entry = tensor.metadata_props.add()
    entry.key, entry.value = "origin", "test"
    value = load(model_with(tensor)).model.graph.initializers["w"]
    got = value.const_value
    assert isinstance(got, ir.Tensor) and got.dtype == ir.DataType(tensor.data_type)
    np.testing.assert_array_equal(got.numpy(), array)
    assert got.numpy() is got.numpy() and not got.numpy().flags.writeable  # read once, shared, read-only
    assert got.doc_string == "the weights" and dict(got.metadata_props) == {"origin": "test"}


def test_packed_and_typed_field_tensors_keep_onnx_irs_reading() -> None:
    packed = helper.make_tensor("p", TensorProto.INT4, [4], [1, -2, 3, -4])
    typed = helper.make_tensor("t", TensorProto.FLOAT, [2], [0.5, 1.5])  # float_data, no raw_data
    graph = load(model_with(packed, typed, opset=21)).model.graph  # Identity takes int4 from opset 21
    assert graph.initializers["p"].const_value.numpy().astype(np.int8).tolist() == [1, -2, 3, -4]
    np.testing.assert_array_equal(graph.initializers["t"].const_value.numpy(), [0.5, 1.5])
