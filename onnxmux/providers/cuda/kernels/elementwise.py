"""One-pass CuPy kernels for the optimizer's elementwise chains: Gemm/MatMul + bias + activation
(``com.onnxmux.FusedGemm``) and Gelu (ONNX opset 20, and ``com.onnxmux.Gelu`` for older opsets).

A FusedGemm is one cuBLAS GEMM (``xp.matmul``) and one epilogue kernel applying alpha, the bias
times beta and the activation in place, where numpy-style code makes a pass for each.
"""

from __future__ import annotations

from typing import Any

from onnxmux.core.context import NodeContext
from onnxmux.providers.cuda.kernels import raw
from onnxmux.providers.cuda.kernels.common import FLOAT_DTYPES, activation_of
from onnxmux.providers.cuda.kernels.registry import op
from onnxmux.providers.cuda.table import run_shared

DOMAIN = "com.onnxmux"


@op("FusedGemm", 1, domain=DOMAIN)
def fused_gemm(ctx: NodeContext, xp: Any):
    """``act(alpha * op(A) @ op(B) + beta * C)``: a GEMM, then one in-place epilogue kernel."""
    shared = run_shared(ctx, xp)
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    trans_a = ctx.attr("transA", 0)
    trans_b = ctx.attr("transB", 0)
    name, a_param, b_param = activation_of(ctx)

    def run(a, b, c=None):
        if a.dtype not in FLOAT_DTYPES or b.dtype != a.dtype or (c is not None and c.dtype != a.dtype):
            return shared(a, b, c)
        if a.ndim == 2 and b.ndim == 2:
            a, b = (a.T if trans_a else a), (b.T if trans_b else b)
        elif trans_a or trans_b:
            return shared(a, b, c)
        y = xp.matmul(a, b)
        bias = c is not None and beta != 0
        kernel = raw.epilogue(name, bias, False)
        args = (c,) if bias else ()
        kernel(*args, alpha, beta, a_param, b_param, y)
        return y

    return run


@op("Gelu", 1, domain=DOMAIN)
@op("Gelu", 20)
def gelu(ctx: NodeContext, xp: Any):
    """ONNX Gelu, and the optimizer's Gelu for older opsets, in one pass (erf or tanh form) computed in float."""
    shared = run_shared(ctx, xp)
    approximate = ctx.attr("approximate", "none")
    if approximate not in raw.GELU_EXPR:
        raise ctx.error(f"approximate must be 'none' or 'tanh', got '{approximate}'")
    kernel = raw.gelu(approximate)

    def run(x):
        return kernel(x) if x.dtype in FLOAT_DTYPES else shared(x)

    return run
