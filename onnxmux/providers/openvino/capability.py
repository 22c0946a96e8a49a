"""Which ONNX nodes OpenVINO can run, found by asking OpenVINO itself.

The candidates first pass a static check (tensor types OpenVINO takes, no known numerical
deviations from ONNX). The rest are cut out as one ONNX model, converted with OpenVINO's ONNX
frontend (``convert_partially``: nodes it cannot convert stay as framework nodes) and queried
with ``Core.query_model`` for the target device. OpenVINO names the ops that end an ONNX
node's translation after that node's output tensors, so each ONNX node maps to the ops between
its input tensors and its output tensors. Nodes the frontend cannot convert are dropped first
(an op fed by one may be reported as unsupported for that reason alone), then the nodes the
device refuses, and the rest are queried again. When the whole-group conversion fails, or a
node's outputs cannot be found in the converted model, the node is checked alone, with the
verdict cached per node signature.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any, Mapping, Sequence

import onnx
import onnx_ir as ir

from onnxmux.core.compiler import free_values_of_node
from onnxmux.core.node_attributes import subgraphs_of
from onnxmux.partition.subgraph import extract
from onnxmux.providers.openvino.deviations import Check
from onnxmux.providers.openvino.serialize import model_bytes

#: Element types OpenVINO computes as ONNX does and numpy can hold (float64 is computed as
#: float32 by the CPU plugin, so it is left out).
SUPPORTED_DTYPES = frozenset(
    {
        ir.DataType.FLOAT,
        ir.DataType.FLOAT16,
        ir.DataType.INT8,
        ir.DataType.UINT8,
        ir.DataType.INT16,
        ir.DataType.UINT16,
        ir.DataType.INT32,
        ir.DataType.UINT32,
        ir.DataType.INT64,
        ir.DataType.UINT64,
        ir.DataType.BOOL,
    }
)
#: Op types OpenVINO's ONNX frontend leaves for nodes it could not translate.
FRAMEWORK_OPS = frozenset({"NotSupportedONNXNode", "ONNXFrameworkNode", "FrameworkNode"})
UNCONVERTED = "OpenVINO's ONNX frontend cannot convert this node"
#: How many times the candidates are queried: unconvertible nodes are dropped first, then the
#: nodes the device refuses, then the rest are confirmed; nodes left after the last round stay.
MAX_ROUNDS = 3

#: Verdicts of single-node checks, by (device, node signature): None or the reason.
_single_node_verdicts: dict[tuple[str, str], str | None] = {}
_verdicts_lock = threading.Lock()


def _value_reason(value: ir.Value) -> str | None:
    """Why OpenVINO cannot take this value, or None."""
    if not isinstance(value.type, ir.TensorType):
        kind = type(value.type).__name__ if value.type is not None else "a map or an untyped value"
        return f"value '{value.name}' is not a tensor ({kind}); OpenVINO takes tensors only"
    if value.type.dtype not in SUPPORTED_DTYPES:
        return f"value '{value.name}' has element type {value.type.dtype.name}, which OpenVINO does not take"
    return None


def static_reason(node: ir.Node, opsets: Mapping[str, int], deviations: Mapping[str, Check]) -> str | None:
    """Why a node is not even offered to OpenVINO (types, empty tensors, known deviations), or None.

    Nodes with subgraphs are checked with every node and value of their bodies.
    """
    for value in list(node.inputs) + list(node.outputs):
        if value is not None and value.name:
            reason = _value_reason(value)
            if reason:
                return reason
    for value in node.inputs:
        if value is not None and value.shape is not None and 0 in value.shape:
            return f"input '{value.name}' is empty; OpenVINO's results on empty tensors differ from ONNX's"
    check = deviations.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if check is not None:
        reason = check(node, opsets.get("", 1))
        if reason:
            return reason
    for body in subgraphs_of(node):
        for value in list(body.inputs) + list(body.outputs):
            reason = _value_reason(value)
            if reason:
                return f"subgraph: {reason}"
        for inner in body:
            reason = static_reason(inner, opsets, deviations)
            if reason:
                return f"subgraph node {inner.op_type}: {reason}"
    return None


class CapabilityChecker:
    """Asks one OpenVINO Core which nodes a device can run."""

    def __init__(self, core: Any, device: str, deviations: Mapping[str, Check]) -> None:
        self.core = core
        self.device = device
        self.deviations = deviations
        #: The opsets of the last top-level graph; subgraph bodies carry none of their own.
        self.opsets: dict[str, int] = {}
        self._frontend: Any = None

    def check(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> dict[ir.Node, str | None]:
        """Each candidate with None (OpenVINO runs it) or the reason it does not."""
        if graph.opset_imports:
            self.opsets = {("" if d == "ai.onnx" else d): v for d, v in graph.opset_imports.items()}
        verdicts: dict[ir.Node, str | None] = {}
        remaining = []
        for node in candidates:
            verdicts[node] = static_reason(node, self.opsets, self.deviations)
            if verdicts[node] is None:
                remaining.append(node)
        for _ in range(MAX_ROUNDS):
            if not remaining:
                break
            rejected = self._query_group(graph, remaining)
            if not rejected:
                break
            verdicts.update(rejected)
            remaining = [n for n in remaining if n not in rejected]
        return verdicts

    def _query_group(self, graph: ir.Graph, nodes: list[ir.Node]) -> dict[ir.Node, str]:
        """The nodes of ``nodes`` OpenVINO rejects when given them together, with reasons."""
        try:
            ov_model = self._convert(self._as_model(graph, nodes), nodes)
            supported = set(self.core.query_model(ov_model, self.device))
        except Exception:  # the frontend or the device refused the group as a whole
            return self._check_singly(graph, nodes)
        by_name = _ops_by_tensor_name(ov_model)
        known_names = {v.name for n in nodes for v in list(n.inputs) + list(n.outputs) if v is not None and v.name}
        unconverted: dict[ir.Node, str] = {}
        refused: dict[ir.Node, str] = {}
        unmapped = []
        for node in nodes:
            outputs = [v.name for v in node.outputs if v.name]
            ends = [by_name.get(name) for name in outputs]
            if not ends or any(op is None for op in ends):
                unmapped.append(node)
                continue
            region = _region(ends, known_names - set(outputs))
            if any(op.get_type_name() in FRAMEWORK_OPS for op in region):
                unconverted[node] = UNCONVERTED
            else:
                reason = self._refusal(region, supported)
                if reason:
                    refused[node] = reason
        if unmapped:
            unconverted.update(self._check_singly(graph, unmapped))
        # An op fed by an unconverted node can be refused for that alone (its input then has a
        # dynamic rank), so refusals count only in a round where every node converted.
        return unconverted or refused

    def _refusal(self, ops: list[Any], supported: set[str]) -> str | None:
        """Why the device refuses these converted ops, or None when it supports them all."""
        refused = sorted({op.get_type_name() for op in ops if op.get_friendly_name() not in supported})
        if refused:
            return f"OpenVINO's {self.device} plugin does not report its translation ({', '.join(refused)}) as supported"
        return None

    def _check_singly(self, graph: ir.Graph, nodes: list[ir.Node]) -> dict[ir.Node, str]:
        """Check each node as a model of its own; verdicts are cached by node signature."""
        rejected: dict[ir.Node, str] = {}
        for node in nodes:
            model = self._as_model(graph, [node])
            key = _signature(model)
            with _verdicts_lock:
                cached = key is not None and (self.device, key) in _single_node_verdicts
                reason = _single_node_verdicts.get((self.device, key)) if cached else None
            if not cached:
                reason = self._check_alone(model, node)
                if key is not None:
                    with _verdicts_lock:
                        _single_node_verdicts[(self.device, key)] = reason
            if reason:
                rejected[node] = reason
        return rejected

    def _check_alone(self, model: onnx.ModelProto, node: ir.Node) -> str | None:
        try:
            ov_model = self._convert(model, [node])
            supported = set(self.core.query_model(ov_model, self.device))
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            return f"OpenVINO cannot read it: {type(exc).__name__}: {lines[0][:200] if lines else ''}"
        ops = list(ov_model.get_ordered_ops())
        if any(op.get_type_name() in FRAMEWORK_OPS for op in ops):
            return UNCONVERTED
        return self._refusal(ops, supported)

    def _as_model(self, graph: ir.Graph, nodes: list[ir.Node]) -> onnx.ModelProto:
        implicit = {n: free_values_of_node(n) for n in nodes}
        return extract(nodes, graph, self.opsets, implicit).model

    def _convert(self, model: onnx.ModelProto, nodes: Sequence[ir.Node]) -> Any:
        """The model through OpenVINO's ONNX frontend, untranslatable nodes kept as framework nodes."""
        if self._frontend is None:
            from openvino.frontend import FrontEndManager

            self._frontend = FrontEndManager().load_by_framework("onnx")
        return self._frontend.convert_partially(self._frontend.load(io.BytesIO(model_bytes(model))))


def _ops_by_tensor_name(ov_model: Any) -> dict[str, Any]:
    """Each tensor name of the converted model with the op producing it."""
    found: dict[str, Any] = {}
    for op in ov_model.get_ordered_ops():
        for output in op.outputs():
            for name in output.get_names():
                found.setdefault(name, op)
    return found


def _region(ends: list[Any], stop_names: set[str]) -> list[Any]:
    """The ops translating one ONNX node: back from its output ops to tensors named by other values."""
    seen: dict[int, Any] = {}
    stack = list(ends)
    while stack:
        op = stack.pop()
        if op.get_instance_id() in seen:
            continue
        seen[op.get_instance_id()] = op
        for source in op.input_values():
            producer = source.get_node()
            if not (set(source.get_names()) & stop_names) and producer.get_type_name() != "Parameter":
                stack.append(producer)
    return list(seen.values())


def _signature(model: onnx.ModelProto) -> str | None:
    """A digest of a single-node model with its value names replaced by positions.

    Two nodes with the same op, attributes, input and output types and constant inputs get
    the same digest. Nodes with subgraphs get None (their bodies read outer names).
    """
    node = model.graph.node[0]
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    canon = onnx.ModelProto()
    canon.CopyFrom(model)
    rename = {name: f"i{i}" for i, name in enumerate(node.input) if name}
    rename.update({name: f"o{i}" for i, name in enumerate(node.output) if name})
    graph = canon.graph
    graph.node[0].name = ""
    for field in (graph.node[0].input, graph.node[0].output):
        for i, name in enumerate(field):
            field[i] = rename.get(name, name)
    for group in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in group:
            item.name = rename.get(item.name, item.name)
    return hashlib.sha256(canon.SerializeToString(deterministic=True)).hexdigest()
