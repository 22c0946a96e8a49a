"""The ONNX model TensorRT's parser is given for a claimed subgraph, and its content digest.

The partitioner cuts the subgraph out with its weights and typed inputs and outputs
(``onnxmux.partition.subgraph.extract``). Here it is made what TensorRT reads: opset imports
only for the domains its nodes use, no documentation strings or metadata (so the digest, which
keys the engine cache, depends on computation only), and every input ranked, since a TensorRT
network input needs a rank; dimensions may be symbolic.
"""

from __future__ import annotations

import hashlib

import onnx

from onnxmux.core.errors import ProviderError
from onnxmux.core.provider import Subgraph


def export_model(subgraph: Subgraph) -> onnx.ModelProto:
    """The subgraph as the model handed to TensorRT; raises ProviderError for an input of unknown rank."""
    model = onnx.ModelProto()
    model.CopyFrom(subgraph.model)
    for value in model.graph.input:
        if not value.type.tensor_type.HasField("shape"):
            raise ProviderError(f"TensorRT needs the rank of every input; input '{value.name}' has none")
    used = _domains(model.graph)
    kept = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    model.doc_string = ""
    del model.metadata_props[:]
    _strip_docs(model.graph)
    return model


def model_bytes(model: onnx.ModelProto) -> bytes:
    """The model serialized the same way every time."""
    return model.SerializeToString(deterministic=True)


def content_digest(model: onnx.ModelProto) -> str:
    """The SHA-256 of the exported model: the engine cache's subgraph field."""
    return hashlib.sha256(model_bytes(model)).hexdigest()


def _domains(graph: onnx.GraphProto) -> set[str]:
    """The domains of the graph's nodes and their bodies; the default domain is always kept."""
    found = {""}
    for node in graph.node:
        found.add("" if node.domain == "ai.onnx" else node.domain)
        for attr in node.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                found |= _domains(body)
    return found


def _strip_docs(graph: onnx.GraphProto) -> None:
    graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
        for attr in node.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                _strip_docs(body)
