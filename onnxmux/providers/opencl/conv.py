"""Conv (1-D, 2-D and 3-D; groups, pads, auto_pad, strides, dilations) as im2col + the tiled
GEMM of ``matmul``, and the sliding-window geometry the pooling kernels share: the window
attributes are parsed and laid out by the CPU provider's pure-Python ``window_attrs`` and
``WindowAttrs.layout``, and ``padded`` extends their per-dim values to the kernels' three dims.

Spatial dims are handled as three (missing leading ones are size 1), so one kernel serves every
spatial rank. im2col writes the column matrix ``(images, groups, C/g · kernel, out positions)``
in chunks of images, and one batched GEMM per chunk multiplies each group's weights with it,
adding the bias in the GEMM's epilogue, straight into the NCHW output. A 1×1, stride-1,
unpadded convolution skips im2col: the input already is the column matrix.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.conv import Layout, WindowAttrs, window_attrs
from onnxmux.providers.opencl.common import (
    LOCAL_SIZE,
    MOVE_TYPES,
    all_of,
    floats,
    global_size,
    op,
    pack,
    same_types,
)
from onnxmux.providers.opencl.matmul import Gemm

#: Spatial dims the window kernels handle.
SPATIAL = 3
#: Elements of one im2col chunk at most (chunks hold whole images; one image may exceed it).
COLUMN_LIMIT = 2**25

_IM2COL = """
typedef struct {
    int channels; int group_channels; int groups;
    int in[3]; int out[3]; int taps[3]; int stride[3]; int pad[3]; int dilation[3];
} window;

__kernel void im2col(__global E* col, __global const E* x, const window w, const int x_offset, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int positions = w.out[0] * w.out[1] * w.out[2];
    const int rows = w.group_channels * w.taps[0] * w.taps[1] * w.taps[2];
    int p = i % positions;
    int rest = i / positions;
    int r = rest % rows;
    rest /= rows;
    const int g = rest % w.groups;
    const int image = rest / w.groups;
    const int ow = p % w.out[2]; p /= w.out[2];
    const int oh = p % w.out[1];
    const int od = p / w.out[1];
    const int kw = r % w.taps[2]; r /= w.taps[2];
    const int kh = r % w.taps[1]; r /= w.taps[1];
    const int kd = r % w.taps[0];
    const int ch = r / w.taps[0];
    const int id = od * w.stride[0] - w.pad[0] + kd * w.dilation[0];
    const int ih = oh * w.stride[1] - w.pad[1] + kh * w.dilation[1];
    const int iw = ow * w.stride[2] - w.pad[2] + kw * w.dilation[2];
    E v = 0;
    if (id >= 0 && id < w.in[0] && ih >= 0 && ih < w.in[1] && iw >= 0 && iw < w.in[2]) {
        const int plane = image * w.channels + g * w.group_channels + ch;
        v = x[x_offset + ((plane * w.in[0] + id) * w.in[1] + ih) * w.in[2] + iw];
    }
    col[i] = v;
}
"""


def window(
    attrs: WindowAttrs, spatial: Sequence[int], kernel: Sequence[int] | None = None, ceil_mode: bool = False
) -> Layout:
    """``attrs.layout`` over an input of this spatial shape (``kernel`` overrides kernel_shape),
    after checking that explicit pads give a begin and end per spatial dim."""
    rank = len(spatial)
    if attrs.pads and attrs.auto_pad == "NOTSET" and len(attrs.pads) != 2 * rank:
        raise ValueError(f"pads {list(attrs.pads)} do not match the input's {rank} spatial dims")
    return attrs.layout(spatial, kernel, ceil_mode)


def padded(values: Sequence[int], fill: int = 1) -> tuple[int, ...]:
    """Per-spatial-dim ``values`` extended to three spatial dims: leading dims of size 1 (``fill``)."""
    return (fill,) * (SPATIAL - len(values)) + tuple(values)


def spatial_rank(ctx: NodeContext) -> str | None:
    """A check that input 0 has a known rank of 3 to 5 (N, C and one to three spatial dims)."""
    shape = ctx.inputs[0].shape if ctx.inputs[0] is not None else None
    if shape is None or not 3 <= len(shape) <= 2 + SPATIAL:
        return f"the OpenCL window kernels take 1 to {SPATIAL} spatial dims of a known rank"
    return None


@op("Conv", 1, supports=all_of(floats, spatial_rank, same_types()))
def conv(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Grouped, strided, dilated, padded convolution with an optional bias."""
    attrs = window_attrs(ctx)
    group = int(ctx.attr("group", 1))
    if group < 1:
        raise ctx.error(f"'group' must be positive, got {group}")
    dtype = np.dtype(ctx.inputs[0].dtype)
    gemm = Gemm(xp, dtype)
    im2col = xp.kernel(f"#define E {MOVE_TYPES[dtype.itemsize]}\n{_IM2COL}", "im2col")

    def run(x: Any, w: Any, b: Any = None) -> Any:
        images, channels = x.shape[:2]
        maps = w.shape[0]
        if w.ndim != x.ndim or channels != w.shape[1] * group or maps % group:
            raise ValueError(f"input {x.shape} and weights {w.shape} do not fit group={group}")
        if b is not None and b.shape != (maps,):
            raise ValueError(f"bias of shape {b.shape} for {maps} output channels")
        win = window(attrs, x.shape[2:], w.shape[2:])
        out = xp.empty((images, maps, *win.out), x.dtype)
        positions = math.prod(win.out)
        rows = w.shape[1] * math.prod(win.kernel)
        per_group = maps // group
        plane = math.prod(x.shape[2:])
        weights = {"a_batch": (0, per_group * rows), "c": b, "c_strides": (1, 0), "c_batch": (0, per_group)}
        if out.size == 0:
            return out
        if all(k == 1 for k in win.kernel) and all(s == 1 for s in win.strides) and not any(win.begin + win.end):
            gemm(out, w, x, per_group, positions, rows, (rows, 1), (positions, 1), (images, group),
                 b_batch=(channels * plane, w.shape[1] * plane), **weights)
            return out
        chunk = max(1, COLUMN_LIMIT // (group * rows * positions))
        col = xp.empty((min(chunk, images), group, rows, positions), x.dtype)
        geometry = pack(
            channels, w.shape[1], group,
            padded(x.shape[2:]), padded(win.out), padded(win.kernel),
            padded(win.strides), padded(win.begin, 0), padded(win.dilations), width=SPATIAL,
        )
        for start in range(0, images, chunk):
            count = min(chunk, images - start)
            size = count * group * rows * positions
            im2col(global_size(size), (LOCAL_SIZE,), col, x, geometry, start * channels * plane, size)
            gemm(out, w, col, per_group, positions, rows, (rows, 1), (positions, 1), (count, group),
                 b_batch=(group * rows * positions, rows * positions), offsets=(0, 0, 0, start * maps * positions),
                 **weights)
        return out

    return run
