"""Types and shapes of node outputs given to the IR once per distinct type.

Shape inference gives nearly every value of a model a ValueInfoProto, and onnx-ir deserializes
each one on its own (a type, a shape, its dims). Most share a few types, so the loader takes the
plain ones (no doc string, no metadata) of the main graph's node outputs off the proto before
the IR is built and gives each output a copy of the shape deserialized once per distinct type.
Graph outputs and initializers keep theirs on the proto: onnx-ir orders those itself.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir import serde

from onnxmux.core.errors import InvalidGraph


def take_node_output_infos(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Remove the plain value infos of the graph's node outputs from the proto and return them."""
    if not len(graph.value_info):
        return []
    outputs = {name for node in graph.node for name in node.output}
    outputs -= {o.name for o in graph.output}
    outputs -= {t.name for t in graph.initializer}
    plain = [
        i
        for i, info in enumerate(graph.value_info)
        if info.name in outputs and not info.doc_string and not len(info.metadata_props)
    ]
    return [graph.value_info.pop(i) for i in reversed(plain)][::-1]


def give_node_output_infos(graph: ir.Graph, infos: list[onnx.ValueInfoProto]) -> None:
    """Set the type and shape of the graph's node outputs that ``infos`` describe."""
    if not infos:
        return
    values = {value.name: value for node in graph for value in node.outputs}
    parsed: dict[bytes, tuple[ir.TypeProtocol | None, ir.Shape | None]] = {}
    for info in infos:
        value = values.get(info.name)
        if value is None:
            continue
        key = info.type.SerializeToString()
        found = parsed.get(key)
        if found is None:
            try:
                found = parsed[key] = (serde.deserialize_type_proto_for_type(info.type), serde.deserialize_type_proto_for_shape(info.type))
            except Exception as exc:
                raise InvalidGraph(f"the model's graph is malformed: value info '{info.name}': {exc}") from exc
        value.shape = found[1].copy() if found[1] is not None else None
        value.type = found[0]
