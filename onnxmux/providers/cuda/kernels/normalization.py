"""Row kernels for LayerNormalization and Softmax: one block per row, one launch per node.

numpy-style LayerNorm makes some eight passes (mean, centre, square, mean, add, rsqrt, scale,
shift) and Softmax five; these read a row once or twice and write it once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cuda.kernels import raw
from onnxmux.providers.cuda.kernels.common import contiguous_float32
from onnxmux.providers.cuda.kernels.registry import op
from onnxmux.providers.cuda.table import run_shared

DOMAIN = "com.onnxmux"


def softmax_last_axis(xp: Any, x: Any, cols: int, scale: float = 1.0, out: Any = None) -> Any:
    """Softmax of ``scale * x`` over rows of ``cols`` contiguous float32 elements (``out`` may be ``x``)."""
    y = xp.empty_like(x) if out is None else out
    rows = x.size // cols if cols else 0
    if rows:
        raw.softmax_rows()((rows,), (raw.row_threads(cols),), (x, y, np.int64(cols), np.float32(scale)))
    return y


@op("LayerNormalization", 1, domain=DOMAIN)
@op("LayerNormalization", 17)
def layer_normalization(ctx: NodeContext, xp: Any):
    """ONNX LayerNormalization (and the optimizer's, before opset 17) over contiguous float32 rows
    in one launch; the Mean/InvStdDev outputs and other layouts use the shared kernel."""
    shared = run_shared(ctx, xp)
    axis = ctx.attr("axis", -1)
    epsilon = np.float32(ctx.attr("epsilon", 1e-5))
    extra_outputs = ctx.has_output(1) or ctx.has_output(2)

    def run(x, scale, bias=None):
        if extra_outputs or not contiguous_float32(x, scale, bias) or not -x.ndim <= axis < x.ndim:
            return shared(x, scale, bias)
        cols = math.prod(x.shape[axis % x.ndim:])
        if scale.size != cols or (bias is not None and bias.size != cols) or not x.size:
            return shared(x, scale, bias)
        y = xp.empty_like(x)
        beta = bias if bias is not None else scale
        raw.layer_norm_rows()(
            (x.size // cols,), (raw.row_threads(cols),),
            (x, scale, beta, y, np.int64(cols), epsilon, np.int32(bias is not None)),
        )
        return y

    return run


@op("Softmax", 1, 13)
def softmax(ctx: NodeContext, xp: Any):
    """Softmax over the last axis (opset 13+) or the dimensions from ``axis`` on (before 13), one launch."""
    shared = run_shared(ctx, xp)
    coerced = ctx.opset < 13
    axis = ctx.attr("axis", 1 if coerced else -1)

    def run(x):
        if not contiguous_float32(x) or not -x.ndim <= axis < x.ndim or not x.size:
            return shared(x)
        if coerced:
            return softmax_last_axis(xp, x, math.prod(x.shape[axis % x.ndim:]))
        if axis % x.ndim != x.ndim - 1:
            return shared(x)
        return softmax_last_axis(xp, x, x.shape[-1])

    return run
