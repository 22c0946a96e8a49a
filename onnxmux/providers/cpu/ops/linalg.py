"""Linear algebra: Gemm, MatMul, Einsum and Det."""

from __future__ import annotations

from typing import Any

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops.reduce import accumulation_dtype, float_dtype
from onnxmux.providers.cpu.registry import op


def _matmul(xp: Any, a: Any, b: Any) -> Any:
    """``a @ b`` with numpy's N-D broadcasting rules, in a BLAS-friendly dtype."""
    dtype = accumulation_dtype(a.dtype)
    return sharded.matmul(xp, a.astype(dtype, copy=False), b.astype(dtype, copy=False))


@op("Gemm", 1, 6, 7, 9, 11, 13)
def gemm(ctx: NodeContext, xp: Any):
    """``alpha * op(A) @ op(B) + beta * C``, with op an optional transpose and C broadcast."""
    alpha = ctx.attr("alpha", 1.0)
    beta = ctx.attr("beta", 1.0)
    trans_a = ctx.attr("transA", 0)
    trans_b = ctx.attr("transB", 0)
    exact_c = ctx.opset < 7 and not ctx.attr("broadcast", 0)  # before opset 7, C broadcasts only when told

    def run(a, b, c=None):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"Gemm needs 2-D inputs, got {a.shape} and {b.shape}")
        y = _matmul(xp, a.T if trans_a else a, b.T if trans_b else b)
        if exact_c and c is not None and c.shape != y.shape:
            raise ValueError(f"without broadcast=1, C must have the output's shape {y.shape}, got {c.shape}")
        if alpha != 1:
            y = y * alpha
        if c is not None and beta != 0:
            y = y + (c * beta if beta != 1 else c)
        return y.astype(a.dtype, copy=False)

    return run


@op("MatMul", 1, 9, 13)
def matmul(ctx: NodeContext, xp: Any):
    """Matrix product with numpy semantics: 1-D operands promoted, leading axes broadcast."""

    def run(a, b):
        return xp.asarray(_matmul(xp, a, b)).astype(a.dtype, copy=False)

    return run


@op("Einsum", 12, 28)
def einsum(ctx: NodeContext, xp: Any):
    """Einstein summation of the inputs as the equation says (explicit or implicit output)."""
    equation = ctx.attr("equation").replace(" ", "")
    if equation.count("->") > 1 or equation.split("->")[-1].count("...") > 1:
        raise ctx.error(f"malformed einsum equation '{equation}'")

    def run(*inputs):
        dtype = accumulation_dtype(inputs[0].dtype)
        operands = [x.astype(dtype, copy=False) for x in inputs]
        result = xp.einsum(equation, *operands, optimize=True)
        return xp.asarray(result).astype(inputs[0].dtype, copy=False)

    return run


@op("Det", 11, 22)
def det(ctx: NodeContext, xp: Any):
    """Determinant of each square matrix in the trailing two axes."""

    def run(x):
        determinant = xp.linalg.det(x.astype(float_dtype(x.dtype), copy=False))
        return xp.asarray(determinant).astype(x.dtype, copy=False)

    return run
