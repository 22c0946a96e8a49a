"""A default estimate of a node's work from its static shapes, for cost-aware placement.

The unit is one byte copied between devices: a provider is assumed to do ``MACS_PER_BYTE``
multiply-adds (MatMul, Gemm, Conv) in the time a byte crosses to it, or one element of output
of any other operator. Dimensions unknown at session creation (batch, sequence) count as
``UNKNOWN_DIM``. A provider with better figures overrides ``ExecutionProvider.node_cost``.
"""

from __future__ import annotations

import math

from onnxmux.core.context import NodeContext
from onnxmux.core.types import TypeInfo

#: Multiply-adds a device does in the time one byte is copied to it.
MACS_PER_BYTE = 16
#: What a dimension unknown at session creation counts as.
UNKNOWN_DIM = 32


def _dim(d: object) -> int:
    return d if isinstance(d, int) else UNKNOWN_DIM


def elements(info: TypeInfo | None) -> int:
    """The number of elements of a tensor type (see ``UNKNOWN_DIM``; 0 for non-tensors)."""
    if info is None or info.kind != "tensor" or info.shape is None:
        return 0
    return math.prod(_dim(d) for d in info.shape)


def nbytes(info: TypeInfo | None) -> int:
    """The size in bytes of a tensor type (see ``elements``; 8 bytes per element when the type is unknown)."""
    itemsize = info.dtype.itemsize if info is not None and info.dtype is not None and info.dtype.kind != "O" else 8
    return elements(info) * itemsize


def estimate(ctx: NodeContext) -> float:
    """Multiply-adds of MatMul, Gemm and Conv over ``MACS_PER_BYTE``; output elements of other operators."""
    out = sum(elements(t) for t in ctx.outputs)
    a = ctx.inputs[0] if ctx.inputs else None
    b = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    if ctx.op_type in ("MatMul", "Gemm") and a is not None and a.shape:
        k = a.shape[0] if ctx.op_type == "Gemm" and ctx.attrs.get("transA", 0) else a.shape[-1]
        return out * _dim(k) / MACS_PER_BYTE
    if ctx.op_type == "Conv" and b is not None and b.shape:
        return out * math.prod(_dim(d) for d in b.shape[1:]) / MACS_PER_BYTE
    return float(out)
