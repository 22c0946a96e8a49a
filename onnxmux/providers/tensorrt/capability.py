"""Which nodes TensorRT takes: onnxmux's own checks first, then TensorRT's ONNX parser decides.

Nodes of onnxmux's private ``com.onnxmux`` domain (optimizer fusions), of other non-ONNX
domains, or with values TensorRT has no type for are declined here and never reach TensorRT.
The rest are cut out as one model and given to the parser's support query
(``supports_model_v2``); it splits them into subgraphs, each supported or not, and the
supported ones become the claimed groups. Declined nodes keep the parser's error for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.compiler import free_values_of_node
from onnxmux.core.node_attributes import subgraphs_of
from onnxmux.partition.subgraph import extract
from onnxmux.providers.tensorrt.export import export_model, model_bytes

PRIVATE_DOMAIN = "com.onnxmux"
#: Element types TensorRT networks carry (no float64, no unsigned types but uint8) that CuPy can hold
#: (no bfloat16: trt_bf16_enable still lets TensorRT compute in it inside an engine).
TENSOR_TYPES = frozenset(
    {
        ir.DataType.FLOAT,
        ir.DataType.FLOAT16,
        ir.DataType.INT8,
        ir.DataType.UINT8,
        ir.DataType.INT32,
        ir.DataType.INT64,
        ir.DataType.BOOL,
    }
)
UNSUPPORTED_SUBGRAPH = "TensorRT's ONNX parser reports the part of the graph holding this node as unsupported"


@dataclass
class ParserReport:
    """The parser's answer for one model: node-index subgraphs with their verdicts, and errors by node index."""

    subgraphs: list[tuple[list[int], bool]]
    errors: dict[int, str] = field(default_factory=dict)


#: Asks TensorRT about a serialized model (``parser_query`` in the provider; a stand-in in tests).
Query = Callable[[bytes], ParserReport]


def opsets_of(graph: ir.Graph, previous: Mapping[str, int]) -> dict[str, int]:
    """The graph's opsets by domain; subgraph bodies declare none and keep ``previous`` (the top-level graph's)."""
    if not graph.opset_imports:
        return dict(previous)
    return {("" if d == "ai.onnx" else d): v for d, v in graph.opset_imports.items()}


def static_reason(node: ir.Node) -> str | None:
    """Why ``node`` is never offered to TensorRT (domain, value types, the same for its bodies), or None."""
    if node.domain == PRIVATE_DOMAIN:
        return f"{node.op_type} is onnxmux's private com.onnxmux op; it is never handed to TensorRT"
    if node.domain not in ("", "ai.onnx"):
        return f"domain '{node.domain}': TensorRT's ONNX parser reads the default ONNX domain only"
    for value in list(node.inputs) + list(node.outputs):
        if value is None or not value.name:
            continue
        if not isinstance(value.type, ir.TensorType):
            return f"value '{value.name}' is not a tensor; TensorRT takes tensors only"
        if value.type.dtype not in TENSOR_TYPES:
            return f"value '{value.name}' has element type {value.type.dtype.name}, which TensorRT does not carry"
        if value.shape is None:
            return f"value '{value.name}' has no known rank; TensorRT needs ranked tensors"
    for body in subgraphs_of(node):
        for inner in body:
            reason = static_reason(inner)
            if reason:
                return f"subgraph node {inner.op_type}: {reason}"
    return None


def claim(
    graph: ir.Graph, candidates: Sequence[ir.Node], opsets: Mapping[str, int], query: Query
) -> tuple[list[list[ir.Node]], dict[ir.Node, str]]:
    """The groups TensorRT takes and the reason for every candidate it does not."""
    reasons: dict[ir.Node, str] = {}
    offered = []
    for node in candidates:
        reason = static_reason(node)
        if reason:
            reasons[node] = reason
        else:
            offered.append(node)
    if not offered:
        return [], reasons
    implicit = {n: free_values_of_node(n) for n in offered}
    model = export_model(extract(offered, graph, opsets, implicit))
    report = query(model_bytes(model))
    groups = []
    covered: set[int] = set()
    for indices, supported in report.subgraphs:
        covered.update(indices)
        if supported:
            groups.append([offered[i] for i in indices])
        else:
            for i in indices:
                reasons[offered[i]] = report.errors.get(i, UNSUPPORTED_SUBGRAPH)
    for i, node in enumerate(offered):
        if i not in covered:
            reasons[node] = report.errors.get(i, "TensorRT's ONNX parser placed this node in no subgraph")
    return groups, reasons


def parser_query(trt: Any, logger: Any) -> Query:
    """The support query of TensorRT's ONNX parser (``supports_model_v2`` and its subgraph lists)."""

    def query(data: bytes) -> ParserReport:
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        parser.supports_model_v2(data)
        subgraphs = [
            (list(parser.get_subgraph_nodes(i)), bool(parser.is_subgraph_supported(i))) for i in range(parser.num_subgraphs)
        ]
        errors: dict[int, str] = {}
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            if error.node() >= 0:
                errors.setdefault(error.node(), f"TensorRT's ONNX parser: {error.desc()}")
        return ParserReport(subgraphs, errors)

    return query
