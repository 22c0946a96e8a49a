"""Types and shapes of node outputs and initializers given to the IR once per distinct type.

Shape inference gives nearly every value of a model a ValueInfoProto (exporters give one to
each initializer too), and onnx-ir deserializes each one on its own (a type, a shape, its dims).
Most share a few types, so the loader takes the plain ones (no doc string, no metadata) of the
main graph's node outputs and initializers off the proto before the IR is built and gives each
value the shape deserialized once per distinct type, as onnx-ir would have (a value info
overrides the type and shape an initializer takes from its tensor). Those shapes are frozen, as
onnx-ir's are, so values may share one. Graph inputs and outputs keep theirs on the proto:
onnx-ir orders those itself.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir import serde

from onnxmux.core.errors import InvalidGraph


def take_plain_infos(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Remove the plain value infos of the graph's node outputs and initializers (neither a graph
    input nor a graph output) from the proto and return them."""
    if not len(graph.value_info):
        return []
    taken = {name for node in graph.node for name in node.output}
    taken.update(t.name for t in graph.initializer)
    taken -= {o.name for o in graph.output}
    taken -= {i.name for i in graph.input}
    plain = [
        i
        for i, info in enumerate(graph.value_info)
        if info.name in taken and not info.doc_string and not len(info.metadata_props)
    ]
    return [graph.value_info.pop(i) for i in reversed(plain)][::-1]


def give_plain_infos(graph: ir.Graph, infos: list[onnx.ValueInfoProto]) -> None:
    """Set the type and shape of the graph's node outputs and initializers that ``infos`` describe."""
    if not infos:
        return
    values = {value.name: value for node in graph for value in node.outputs}
    values.update(graph.initializers)
    parsed: dict[bytes, tuple[ir.TypeProtocol | None, ir.Shape | None]] = {}
    tensor_types: dict[int, ir.TensorType] = {}
    for info in infos:
        value = values.get(info.name)
        if value is None:
            continue
        key = info.type.SerializeToString()
        found = parsed.get(key)
        if found is None:
            found = _plain_tensor(info.type, tensor_types)
            if found is None:
                try:
                    found = (serde.deserialize_type_proto_for_type(info.type), serde.deserialize_type_proto_for_shape(info.type))
                except Exception as exc:
                    raise InvalidGraph(f"the model's graph is malformed: value info '{info.name}': {exc}") from exc
            parsed[key] = found
        value.shape, value.type = found[1], found[0]


def _plain_tensor(
    proto: onnx.TypeProto, tensor_types: dict[int, ir.TensorType]
) -> tuple[ir.TensorType, ir.Shape | None] | None:
    """A tensor type of a known element type without denotations, read as onnx-ir's serde reads
    it (one frozen Shape of ints and SymbolicDims) in a few C-level field reads, its TensorType
    shared per element type; None for anything else (serde reads those)."""
    if proto.WhichOneof("value") != "tensor_type" or proto.denotation:
        return None
    tensor = proto.tensor_type
    kind = tensor.elem_type
    if not tensor.HasField("elem_type") or kind not in _KNOWN_TYPES:
        return None
    tensor_type = tensor_types.get(kind)
    if tensor_type is None:
        tensor_type = tensor_types[kind] = ir.TensorType(ir.DataType(kind))
    if not tensor.HasField("shape"):
        return tensor_type, None
    dims = []
    for dim in tensor.shape.dim:
        if dim.denotation:
            return None
        which = dim.WhichOneof("value")
        dims.append(dim.dim_value if which == "dim_value" else ir.SymbolicDim(dim.dim_param if which == "dim_param" else None))
    return tensor_type, ir.Shape(dims, frozen=True)


#: Element types onnx-ir knows (others take serde's path and its error).
_KNOWN_TYPES = frozenset(int(t) for t in ir.DataType)
