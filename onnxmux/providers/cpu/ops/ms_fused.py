"""CPU kernels of onnxruntime's fused ``com.microsoft`` operators that onnxruntime's graph
optimizer writes into saved models: FusedConv, FusedGemm, FusedMatMul and the Gelu family.

FusedConv and FusedGemm share their kernels with onnxmux's own ``com.onnxmux`` fusions
(``fused.py``), whose attributes follow onnxruntime's; the Gelu family shares its Gelu.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops.fused import biased_gelu, compute_dtype, fused_conv, fused_gemm, gate, gelu
from onnxmux.providers.cpu.registry import op

DOMAIN = "com.microsoft"

op("FusedConv", 1, domain=DOMAIN)(fused_conv)
op("FusedGemm", 1, domain=DOMAIN)(fused_gemm)


def _batch_transposed(x: Any) -> Any:
    """``transBatch``: the first axis moves behind the batch axes, before the matrix's last axis
    ([d0, d1, ..., dn-2, dn-1] -> [d1, ..., dn-2, d0, dn-1])."""
    if x.ndim < 3:
        return x
    return x.transpose(*range(1, x.ndim - 1), 0, x.ndim - 1)


@op("FusedMatMul", 1, domain=DOMAIN)
def fused_matmul(ctx: NodeContext, xp: Any):
    """``alpha * op(A) @ op(B)`` with NumPy matmul broadcasting; op transposes batch and/or matrix axes."""
    alpha = ctx.attr("alpha", 1.0)
    flags = {key: bool(ctx.attr(key, 0)) for key in ("transA", "transB", "transBatchA", "transBatchB")}

    def operand(x: Any, batch: bool, matrix: bool) -> Any:
        if batch:
            x = _batch_transposed(x)
        return x.swapaxes(-1, -2) if matrix and x.ndim >= 2 else x

    def run(a, b):
        work = compute_dtype(a.dtype)
        a2 = operand(a, flags["transBatchA"], flags["transA"]).astype(work, copy=False)
        b2 = operand(b, flags["transBatchB"], flags["transB"]).astype(work, copy=False)
        y = sharded.matmul(xp, a2, b2)
        if alpha != 1:
            y *= alpha
        return y.astype(a.dtype, copy=False)

    return run


@op("Gelu", 1, domain=DOMAIN)
def ms_gelu(ctx: NodeContext, xp: Any):
    """Gelu, erf form."""
    return gelu(xp, tanh=False)


@op("BiasGelu", 1, domain=DOMAIN)
def bias_gelu(ctx: NodeContext, xp: Any):
    """Gelu (erf form) of ``A + B``."""
    return biased_gelu(xp, tanh=False)


@op("FastGelu", 1, domain=DOMAIN)
def fast_gelu(ctx: NodeContext, xp: Any):
    """Gelu's tanh approximation of ``X`` (plus ``bias`` when given)."""
    return biased_gelu(xp, tanh=True)


@op("QuickGelu", 1, domain=DOMAIN)
def quick_gelu(ctx: NodeContext, xp: Any):
    """``x * sigmoid(alpha * x)`` (alpha defaults to 1.702), as ``x * (tanh(alpha*x/2) + 1) / 2``."""
    half_alpha = ctx.attr("alpha", 1.702) / 2

    def run(x):
        work = compute_dtype(x.dtype)
        y = xp.multiply(x, half_alpha, dtype=work)
        with np.errstate(over="ignore"):
            xp.tanh(y, out=y)
        return gate(y, x)

    return run
