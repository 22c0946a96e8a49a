"""A kernel-based provider: one registry, one kernel factory per operator version."""

from __future__ import annotations

import numpy as np

import onnxmux

REGISTRY = onnxmux.KernelRegistry()
op = REGISTRY.register


def _float_tensors(ctx) -> str | None:
    """This provider computes in float32 only; other dtypes stay with the next provider."""
    for info in ctx.inputs:
        if info is not None and info.dtype != np.float32:
            return f"only float32 is supported, got {info.dtype}"
    return None


@op("Relu", 6, 13, 14, supports=_float_tensors)
def relu(ctx, xp):
    """max(x, 0)."""
    return lambda x: xp.maximum(x, np.float32(0))


@op("Add", 7, 13, 14, supports=_float_tensors)
def add(ctx, xp):
    """a + b with numpy broadcasting."""
    return lambda a, b: a + b


@op("Mul", 7, 13, 14, supports=_float_tensors)
def mul(ctx, xp):
    """a * b with numpy broadcasting."""
    return lambda a, b: a * b


@op("MatMul", 9, 13, supports=_float_tensors)
def matmul(ctx, xp):
    """Matrix product with batch broadcasting."""
    return xp.matmul


@op("Gemm", 11, 13, supports=_float_tensors)
def gemm(ctx, xp):
    """alpha * A' @ B' + beta * C."""
    alpha = np.float32(ctx.attr("alpha", 1.0))
    beta = np.float32(ctx.attr("beta", 1.0))
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)

    def run(a, b, c=None):
        y = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if alpha != 1:
            y = y * alpha
        return y if c is None else y + beta * c

    return run


def _flag(value) -> bool:
    text = str(value).strip().lower()
    if text not in ("0", "1", "true", "false"):
        raise ValueError("expected 0, 1, true or false")
    return text in ("1", "true")


class AcmeExecutionProvider(onnxmux.KernelProvider):
    """Runs Relu, Add, Mul, MatMul and Gemm in float32 on the host."""

    name = "AcmeExecutionProvider"
    aliases = ("acme",)
    device = "cpu"
    registry = REGISTRY
    option_types = {"fast_math": _flag}
