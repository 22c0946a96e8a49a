"""Subgraph models as bytes OpenVINO reads.

The graph optimizer fuses patterns into ``com.onnxmux`` Gelu and LayerNormalization where the
model's opset predates the ONNX operators. They have the ONNX operators' semantics and
attributes, and OpenVINO's ONNX frontend translates the ONNX operators at any opset, so they
are handed over in the default domain.
"""

from __future__ import annotations

import onnx

ONNXMUX_DOMAIN = "com.onnxmux"
#: ``com.onnxmux`` ops that are the default-domain ONNX op of the same name.
ONNX_EQUIVALENTS = frozenset({"Gelu", "LayerNormalization"})


def model_bytes(model: onnx.ModelProto) -> bytes:
    """``model`` serialized, with onnxmux's ONNX-equivalent ops in the default domain."""
    private = [i for i, n in enumerate(model.graph.node) if n.domain == ONNXMUX_DOMAIN and n.op_type in ONNX_EQUIVALENTS]
    if not private:
        return model.SerializeToString()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for index in private:
        copy.graph.node[index].domain = ""
    return copy.SerializeToString()
