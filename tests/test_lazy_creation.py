"""What session creation leaves until asked: the execution plan is described on first request,
and a node context converts an attribute when a kernel first reads it; both give what eager
building gave."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

import onnxmux as ort
from onnxmux.core.bulk_attrs import BulkAttr
from onnxmux.core.context import NodeContext
from onnxmux.core.errors import InvalidGraph


def _chain() -> bytes:
    nodes = [
        helper.make_node("Add", ["x", "x"], ["a"], name="add"),
        helper.make_node("LeakyRelu", ["a"], ["b"], name="leaky", alpha=0.5),
        helper.make_node("Neg", ["b"], ["y"], name="neg"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_execution_plan_described_after_runs_is_the_plan_of_the_session() -> None:
    session = ort.InferenceSession(_chain())
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, -np.where(2 * x > 0, 2 * x, x))
    plan = session.get_execution_plan()
    assert plan is session.get_execution_plan()
    assert [(n["name"], n["op_type"], n["provider"]) for n in plan.nodes] == [
        ("add", "Add", "CPUExecutionProvider"),
        ("leaky", "LeakyRelu", "CPUExecutionProvider"),
        ("neg", "Neg", "CPUExecutionProvider"),
    ]
    assert [p["nodes"] for p in plan.partitions] == [["add", "leaky", "neg"]]


def test_partition_summary_is_logged_at_info_level(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="onnxmux"):
        ort.InferenceSession(_chain())
    messages = [r.getMessage() for r in caplog.records]
    assert "partitioned 3 nodes into 1 partitions; 0 device copies; 0 nodes fell back to the CPU" in messages


def _context(node: ir.Node) -> NodeContext:
    return NodeContext(node, 17, [None] * len(node.inputs), [None] * len(node.outputs))


def test_node_context_converts_each_attribute_when_read() -> None:
    tensor = ir.tensor(np.array([1.5, 2.5], dtype=np.float32))
    node = ir.Node(
        "",
        "Custom",
        [],
        attributes=[
            ir.AttrFloat32("alpha", 0.25),
            ir.AttrInt64s("axes", [0, 2]),
            ir.AttrString("mode", "edge"),
            ir.AttrTensor("value", tensor),
            BulkAttr("forest", ir.AttributeType.INTS, np.arange(3, dtype=np.int64)),
        ],
        name="custom",
    )
    ctx = _context(node)
    assert ctx.attr("axes") == [0, 2]
    assert ctx.attr("axes") is ctx.attr("axes")  # converted once
    assert ctx.attr("forest") == [0, 1, 2]
    assert ctx.attr("absent", 7) == 7
    values = ctx.attrs
    assert set(values) == {"alpha", "axes", "mode", "value", "forest"}
    assert values["alpha"] == pytest.approx(0.25) and values["mode"] == "edge"
    np.testing.assert_array_equal(values["value"], [1.5, 2.5])
    assert values["axes"] is ctx.attr("axes")
    assert ctx.array("forest", np.int64).tolist() == [0, 1, 2]


def test_node_context_names_the_node_for_a_missing_required_attribute() -> None:
    ctx = _context(ir.Node("", "Custom", [], attributes=[ir.AttrInt64("k", 1)], name="custom"))
    with pytest.raises(InvalidGraph, match="node 'custom' \\(Custom, ai.onnx, opset 17\\): required attribute 'axis' is missing"):
        ctx.attr("axis")
    assert ctx.attr("k") == 1
