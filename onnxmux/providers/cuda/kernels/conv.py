"""2-D convolution through cuBLAS: an im2col kernel, one (batched) GEMM per group, and one epilogue
pass adding the bias, the residual ``Z`` of a ``com.onnxmux.FusedConv`` and the activation.

Other ranks and dtypes use the shared CPU kernel through ``xp`` (itself im2col + GEMM, with
strided views in place of the im2col kernel).
"""

from __future__ import annotations

import math
from typing import Any

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.conv import WindowAttrs, window_attrs
from onnxmux.providers.cuda.kernels import raw
from onnxmux.providers.cuda.kernels.common import FLOAT_DTYPES, activation_of
from onnxmux.providers.cuda.kernels.registry import op
from onnxmux.providers.cuda.table import run_shared


def conv2d(xp: Any, x: Any, w: Any, window: WindowAttrs, group: int) -> Any:
    """The (N, M, OH, OW) product of a 2-D NCHW convolution, without bias."""
    n, c, h, width = x.shape
    m = w.shape[0]
    if c != w.shape[1] * group or m % group:
        raise ValueError(f"input {x.shape} and weights {w.shape} do not fit group={group}")
    layout = window.layout(x.shape[2:], w.shape[2:])
    (kh, kw), (sh, sw), (dh, dw) = layout.kernel, layout.strides, layout.dilations
    oh, ow = layout.out
    x = xp.ascontiguousarray(x)
    pointwise = (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(layout.begin + layout.end)
    if pointwise:
        cols = x.reshape(n, group, c // group, oh * ow)
    else:
        cols = xp.empty((n, c * kh * kw, oh * ow), dtype=x.dtype)
        raw.im2col()(x, c, h, width, kh, kw, oh, ow, sh, sw, layout.begin[0], layout.begin[1], dh, dw, cols)
        cols = cols.reshape(n, group, c // group * kh * kw, oh * ow)
    weights = w.reshape(group, m // group, math.prod(w.shape[1:]))
    return xp.matmul(weights, cols).reshape(n, m, oh, ow)


def _conv(ctx: NodeContext, xp: Any, fused: bool):
    shared = run_shared(ctx, xp)
    window = window_attrs(ctx)
    group = ctx.attr("group", 1)
    if group < 1:
        raise ctx.error(f"'group' must be positive, got {group}")
    name, a_param, b_param = activation_of(ctx) if fused else ("", 0.0, 0.0)

    def run(x, w, b=None, z=None):
        if x.ndim != 4 or x.dtype not in FLOAT_DTYPES or any(v is not None and v.dtype != x.dtype for v in (w, b, z)):
            return shared(x, w, b, z) if fused else shared(x, w, b)
        y = conv2d(xp, x, w, window, group)
        if b is None and z is None and not name:
            return y
        args = ((b.reshape(1, -1, 1, 1),) if b is not None else ()) + ((z,) if z is not None else ())
        raw.epilogue(name, b is not None, z is not None)(*args, 1.0, 1.0, a_param, b_param, y)
        return y

    return run


@op("Conv", 1, 11, 22)
def conv(ctx: NodeContext, xp: Any):
    """2-D float Conv: im2col kernel + cuBLAS GEMM + bias pass; others through the shared kernel."""
    return _conv(ctx, xp, fused=False)


@op("FusedConv", 1, domain="com.onnxmux")
def fused_conv(ctx: NodeContext, xp: Any):
    """Conv + bias + residual Z + activation: the GEMM, then one epilogue pass in place."""
    return _conv(ctx, xp, fused=True)
