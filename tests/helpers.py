"""Small models built with onnx.helper for the tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def affine_relu_model(opset: int = 17) -> onnx.ModelProto:
    """y = Relu(x * scale + bias) on x of shape [batch, 3]; ``bias`` is an overridable initializer."""
    scale = numpy_helper.from_array(np.array([1.0, -2.0, 0.5], np.float32), "scale")
    bias = numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"], name="mul"),
            helper.make_node("Add", ["scaled", "bias"], ["shifted"], name="add"),
            helper.make_node("Relu", ["shifted"], ["y"], name="relu"),
        ],
        "affine_relu",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [scale, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    helper.set_model_props(model, {"author": "tests"})
    return model


def affine_relu_reference(x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """What affine_relu_model computes, in numpy."""
    b = np.array([0.1, 0.2, 0.3], np.float32) if bias is None else bias
    return np.maximum(x * np.array([1.0, -2.0, 0.5], np.float32) + b, 0)


def single_node_model(op_type: str, inputs: list, outputs: list, domain: str = "", opset: int = 17, **attrs) -> onnx.ModelProto:
    """A one-node model; ``inputs``/``outputs`` are (name, elem_type, shape) triples."""
    node = helper.make_node(op_type, [n for n, _, _ in inputs], [n for n, _, _ in outputs], name="the_node", domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "single",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model
