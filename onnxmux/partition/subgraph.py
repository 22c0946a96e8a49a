"""Cutting a group of nodes out of a graph as a standalone ONNX model for a compiler."""

from __future__ import annotations

from typing import Mapping, Sequence

import onnx
import onnx_ir as ir

from onnxmux.core.provider import Subgraph


def boundary(nodes: Sequence[ir.Node], graph: ir.Graph, implicit: Mapping[ir.Node, Sequence[ir.Value]]) -> tuple[list[ir.Value], list[ir.Value]]:
    """The values a group reads from outside, and the values it makes that outside reads."""
    members = set(nodes)
    produced = {v for n in nodes for v in n.outputs}
    inputs: dict[ir.Value, None] = {}
    for node in nodes:
        for value in list(node.inputs) + list(implicit.get(node, ())):
            if value is not None and value.name and value not in produced:
                inputs.setdefault(value, None)
    graph_outputs = set(graph.outputs)
    outputs = [
        v
        for n in nodes
        for v in n.outputs
        if v.name and (v in graph_outputs or any(user not in members for user, _ in v.uses()))
    ]
    return list(inputs), outputs


def extract(
    nodes: Sequence[ir.Node],
    graph: ir.Graph,
    opsets: Mapping[str, int],
    implicit: Mapping[ir.Node, Sequence[ir.Value]],
) -> Subgraph:
    """The group as a model: initializers it reads stay inside; other boundary values become inputs."""
    inputs, outputs = boundary(nodes, graph, implicit)
    initializers = [v for v in inputs if v.const_value is not None and not v.is_graph_input()]
    feeds = [v for v in inputs if v not in initializers]
    produced = [v for n in nodes for v in n.outputs if v.name and v not in outputs]
    graph_proto = onnx.helper.make_graph(
        [ir.serde.serialize_node(n) for n in nodes],
        "subgraph",
        [ir.serde.serialize_value(v) for v in feeds],
        [ir.serde.serialize_value(v) for v in outputs],
        [_initializer_proto(v) for v in initializers],
        value_info=[ir.serde.serialize_value(v) for v in produced if v.type is not None],
    )
    model = onnx.helper.make_model(
        graph_proto,
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name="onnxmux",
    )
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    return Subgraph(model, [v.name for v in feeds], [v.name for v in outputs], list(nodes))


def _initializer_proto(value: ir.Value) -> onnx.TensorProto:
    """An initializer as a self-contained TensorProto named after its value.

    External data is read in, since the subgraph model is handed over as bytes with no folder
    to resolve file references against.
    """
    tensor = value.const_value
    if isinstance(tensor, ir.ExternalTensor):
        tensor = ir.Tensor(tensor.numpy(), name=value.name)
    proto = ir.serde.serialize_tensor(tensor)
    proto.name = value.name
    return proto
