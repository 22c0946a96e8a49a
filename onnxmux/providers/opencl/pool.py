"""MaxPool, AveragePool and their Global forms: one work-item per output element walks its
window (1 to 3 spatial dims, strides, dilations, pads, ceil_mode, count_include_pad).

Padding never wins a max and adds nothing to a sum; an average divides by the taps inside the
input, or also the explicit pads with ``count_include_pad`` (never the overhang a ceil-mode
window adds). The Global forms are the same kernels with one window over the whole input.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import LOCAL_SIZE, all_of, floats, global_size, op, pack, single_output, source
from onnxmux.providers.cpu.ops.conv import Layout, window_attrs
from onnxmux.providers.opencl.conv import SPATIAL, padded, spatial_rank, window

_POOL = """
typedef struct {
    int in[3]; int out[3]; int taps[3]; int stride[3]; int pad[3]; int pad_end[3]; int dilation[3];
} window;

__kernel void pool(__global T_T* out, __global const T_T* x, const window w, const int include_pads, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    int rest = i;
    const int ow = rest % w.out[2]; rest /= w.out[2];
    const int oh = rest % w.out[1]; rest /= w.out[1];
    const int od = rest % w.out[0];
    const int plane = rest / w.out[0];
    const int base = plane * w.in[0] * w.in[1] * w.in[2];
#ifdef MAX_POOL
    T_CT best = -INFINITY;
#else
    T_CT total = 0;
    int count = 0;
#endif
    for (int kd = 0; kd < w.taps[0]; ++kd) {
        const int id = od * w.stride[0] - w.pad[0] + kd * w.dilation[0];
        for (int kh = 0; kh < w.taps[1]; ++kh) {
            const int ih = oh * w.stride[1] - w.pad[1] + kh * w.dilation[1];
            for (int kw = 0; kw < w.taps[2]; ++kw) {
                const int iw = ow * w.stride[2] - w.pad[2] + kw * w.dilation[2];
                const int inside = id >= 0 && id < w.in[0] && ih >= 0 && ih < w.in[1] && iw >= 0 && iw < w.in[2];
#ifdef MAX_POOL
                if (inside) {
                    const T_CT v = T_LOAD(x, base + (id * w.in[1] + ih) * w.in[2] + iw);
                    if (v > best || isnan(v)) best = v;
                }
#else
                if (inside) {
                    total += T_LOAD(x, base + (id * w.in[1] + ih) * w.in[2] + iw);
                    ++count;
                } else if (include_pads && id >= -w.pad[0] && id < w.in[0] + w.pad_end[0]
                           && ih >= -w.pad[1] && ih < w.in[1] + w.pad_end[1]
                           && iw >= -w.pad[2] && iw < w.in[2] + w.pad_end[2]) {
                    ++count;
                }
#endif
            }
        }
    }
#ifdef MAX_POOL
    T_STORE(out, i, best);
#else
    T_STORE(out, i, total / (T_CT)count);
#endif
}
"""


def _pool_kernel(xp: Any, dtype: np.dtype, maximum: bool) -> Callable[[Any, Layout, bool], Any]:
    """``run(x, window, include_pads)`` of a max or average pool in ``dtype``."""
    kernel = xp.kernel(source({"T": dtype}, ("#define MAX_POOL\n" if maximum else "") + _POOL), "pool")

    def run(x: Any, win: Layout, include_pads: bool = False) -> Any:
        out = xp.empty((*x.shape[:2], *win.out), x.dtype)
        count = out.size
        if count == 0:
            return out
        geometry = pack(
            padded(x.shape[2:]), padded(win.out), padded(win.kernel), padded(win.strides),
            padded(win.begin, 0), padded(win.end, 0), padded(win.dilations), width=SPATIAL,
        )
        kernel(global_size(count), (LOCAL_SIZE,), out, x, geometry, int(include_pads), count)
        return out

    return run


def _windowed(ctx: NodeContext, xp: Any, maximum: bool) -> Callable[[Any], Any]:
    attrs = window_attrs(ctx, require_kernel=True)
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    include_pads = bool(ctx.attr("count_include_pad", 0))
    pool = _pool_kernel(xp, np.dtype(ctx.inputs[0].dtype), maximum)
    return lambda x: pool(x, window(attrs, x.shape[2:], ceil_mode=ceil_mode), include_pads)


def _without_indices(ctx: NodeContext) -> str | None:
    return "the OpenCL MaxPool does not compute Indices" if single_output(ctx) else None


@op("MaxPool", 1, supports=all_of(floats, spatial_rank, _without_indices))
def max_pool(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Maximum of each window (NaN wins, as in numpy)."""
    return _windowed(ctx, xp, maximum=True)


@op("AveragePool", 1, supports=all_of(floats, spatial_rank))
def average_pool(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Mean of each window."""
    return _windowed(ctx, xp, maximum=False)


def _whole(ctx: NodeContext, xp: Any, maximum: bool) -> Callable[[Any], Any]:
    pool = _pool_kernel(xp, np.dtype(ctx.inputs[0].dtype), maximum)

    def run(x: Any) -> Any:
        spatial = tuple(x.shape[2:])
        if math.prod(spatial) == 0:
            raise ValueError(f"cannot pool over an empty spatial shape {spatial}")
        ones = (1,) * len(spatial)
        zeros = (0,) * len(spatial)
        return pool(x, Layout(spatial, ones, ones, zeros, zeros, ones))

    return run


@op("GlobalMaxPool", 1, supports=all_of(floats, spatial_rank))
def global_max_pool(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Maximum over all spatial dims, kept as size-1 dims."""
    return _whole(ctx, xp, maximum=True)


@op("GlobalAveragePool", 1, supports=all_of(floats, spatial_rank))
def global_average_pool(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Mean over all spatial dims, kept as size-1 dims."""
    return _whole(ctx, xp, maximum=False)
