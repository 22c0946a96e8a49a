"""Convolutions: Conv, ConvTranspose, DeformConv and Col2Im, built on im2col/col2im and GEMM
(depthwise and 1x1 convolutions skip im2col: see ``conv_direct``).

The sliding-window attribute handling here (``window_attrs``, ``WindowAttrs.layout``,
``sliding_windows``) is shared with the pooling kernels; the OpenCL provider's Conv and pools
use ``window_attrs`` and ``WindowAttrs.layout`` too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops import conv_direct
from onnxmux.providers.cpu.ops.reduce import accumulation_dtype
from onnxmux.providers.cpu.registry import op

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
#: Window layouts a Conv node keeps, one per input shape seen (more only with dynamic shapes).
_LAYOUTS_KEPT = 16


@dataclass(frozen=True)
class Layout:
    """Where the windows of one spatial input lie: per-axis geometry and output size."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def spans(self) -> tuple[int, ...]:
        """Extent of a dilated window along each axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))


@dataclass(frozen=True)
class WindowAttrs:
    """The window attributes of a convolution or pool node; None means the per-axis default."""

    kernel: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    dilations: tuple[int, ...] | None
    pads: tuple[int, ...] | None
    auto_pad: str

    def layout(
        self, spatial: Sequence[int], kernel: Sequence[int] | None = None, ceil_mode: bool = False
    ) -> Layout:
        """The window layout over this spatial input shape; ``kernel`` overrides kernel_shape."""
        kernel = tuple(kernel if kernel is not None else self.kernel)
        rank = len(spatial)
        strides = self.strides or (1,) * rank
        dilations = self.dilations or (1,) * rank
        if len(kernel) != rank or len(strides) != rank or len(dilations) != rank:
            raise ValueError(f"window attributes do not match the input's {rank} spatial axes")
        spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = [-(-n // s) for n, s in zip(spatial, strides)]
            total = [
                max(0, (o - 1) * s + e - n) for o, s, e, n in zip(out, strides, spans, spatial)
            ]
            small = [t // 2 for t in total]
            large = [t - t // 2 for t in total]
            begin, end = (small, large) if self.auto_pad == "SAME_UPPER" else (large, small)
        else:
            pads = self.pads if self.pads and self.auto_pad == "NOTSET" else (0,) * (2 * rank)
            begin, end = list(pads[:rank]), list(pads[rank:])
            rounding = math.ceil if ceil_mode and self.auto_pad == "NOTSET" else math.floor
            out = [
                rounding((n + b + f - e) / s) + 1
                for n, b, f, e, s in zip(spatial, begin, end, spans, strides)
            ]
            # A ceil-mode window may not start inside the end padding.
            out = [
                o - 1 if (o - 1) * s >= n + b else o
                for o, s, n, b in zip(out, strides, spatial, begin)
            ]
        if any(o <= 0 for o in out):
            raise ValueError(f"input spatial shape {tuple(spatial)} is too small for the window")
        return Layout(
            kernel, tuple(strides), tuple(dilations), tuple(begin), tuple(end), tuple(out)
        )


def window_attrs(ctx: NodeContext, *, require_kernel: bool = False) -> WindowAttrs:
    """Parse and validate kernel_shape, strides, dilations, pads and auto_pad of a node."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in _AUTO_PADS:
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    kernel, strides, dilations, pads = (
        _int_tuple(ctx, name) for name in ("kernel_shape", "strides", "dilations", "pads")
    )
    if require_kernel and kernel is None:
        raise ctx.error("attribute 'kernel_shape' is required")
    for name, values in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if values is not None and any(v < 1 for v in values):
            raise ctx.error(f"'{name}' must be positive, got {list(values)}")
    if pads is not None and (len(pads) % 2 or any(p < 0 for p in pads)):
        raise ctx.error(f"'pads' must hold a non-negative begin and end per axis, got {list(pads)}")
    ranks = {len(v) for v in (kernel, strides, dilations) if v is not None}
    if pads is not None:
        ranks.add(len(pads) // 2)
    if len(ranks) > 1:
        raise ctx.error("kernel_shape, strides, dilations and pads disagree on the number of axes")
    return WindowAttrs(kernel, strides, dilations, pads, auto_pad)


def _int_tuple(ctx: NodeContext, name: str) -> tuple[int, ...] | None:
    values = ctx.attr(name, None)
    return None if values is None else tuple(int(v) for v in values)


def sliding_windows(xp: Any, x: Any, layout: Layout, fill: Any = 0) -> Any:
    """A strided view (N, C, out..., kernel...) of every window of ``x``, padded with ``fill``."""
    spatial = x.shape[2:]
    needed = [
        (o - 1) * s + e - n - b
        for o, s, e, n, b in zip(layout.out, layout.strides, layout.spans, spatial, layout.begin)
    ]
    ends = [max(0, f) for f in needed]
    if any(layout.begin) or any(ends):
        sizes = [n + b + f for n, b, f in zip(spatial, layout.begin, ends)]
        padded = xp.full((*x.shape[:2], *sizes), fill, dtype=x.dtype)
        padded[(..., *(slice(b, b + n) for b, n in zip(layout.begin, spatial)))] = x
        x = padded
    axes = tuple(range(2, x.ndim))
    view = xp.lib.stride_tricks.sliding_window_view(x, layout.spans, axis=axes)
    index = (
        slice(None),
        slice(None),
        *(slice(0, (o - 1) * s + 1, s) for o, s in zip(layout.out, layout.strides)),
        *(slice(None, None, d) for d in layout.dilations),
    )
    return view[index]


def _grouped_gemm(xp: Any, weights: Any, cols: Any) -> Any:
    """(g, M/g, K) @ (N, g, K, P) -> (N, g, M/g, P), in a BLAS-friendly dtype."""
    dtype = accumulation_dtype(cols.dtype)
    return sharded.matmul(xp, weights.astype(dtype, copy=False), cols.astype(dtype, copy=False))


def _add_bias(y: Any, bias: Any | None) -> Any:
    """Add a per-channel bias to a (N, C, spatial...) array that the caller owns."""
    if bias is not None:
        y += bias.reshape(-1, *(1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


@op("Conv", 1, 11, 22)
def conv(ctx: NodeContext, xp: Any):
    """N-D convolution with groups, strides, dilations and padding: im2col, one GEMM per group."""
    window = window_attrs(ctx)
    group = ctx.attr("group", 1)
    if group < 1:
        raise ctx.error(f"'group' must be positive, got {group}")

    layouts: dict[tuple, Layout] = {}  # by input and kernel shape: the same every run, as a rule
    constant_weights = ctx.constant(1)
    kept: dict = {}  # the depthwise kernel's layouts of constant weights

    def run(x, w, b=None):
        n, c = x.shape[:2]
        m = w.shape[0]
        if c != w.shape[1] * group or m % group:
            raise ValueError(f"input {x.shape} and weights {w.shape} do not fit group={group}")
        shapes = (x.shape[2:], w.shape[2:])
        layout = layouts.get(shapes)
        if layout is None:
            if len(layouts) >= _LAYOUTS_KEPT:
                layouts.clear()
            layout = layouts[shapes] = window.layout(*shapes)
        direct = _direct(x, w, layout, group)
        if direct is conv_direct.depthwise:
            known = kept if w is constant_weights else None
            return direct(xp, x, w, layout, b, known).astype(x.dtype, copy=False)
        if direct is not None:
            return _add_bias(direct(xp, x, w, layout).astype(x.dtype, copy=False), b)
        pointwise = all(k == 1 and s == 1 for k, s in zip(layout.kernel, layout.strides))
        if pointwise and not any(layout.begin + layout.end):
            # A 1x1, stride-1, unpadded kernel: the input already is the column matrix.
            cols = x.reshape(n, group, c // group, math.prod(x.shape[2:]))
        else:
            windows = sliding_windows(xp, x, layout)
            rank = len(layout.kernel)
            # (N, C, out..., kernel...) -> (N, C, kernel..., out...) -> (N, g, C/g * K, P)
            order = (0, 1, *range(2 + rank, 2 + 2 * rank), *range(2, 2 + rank))
            columns = c // group * math.prod(layout.kernel)
            cols = windows.transpose(order).reshape(n, group, columns, math.prod(layout.out))
        y = _grouped_gemm(xp, w.reshape(group, m // group, math.prod(w.shape[1:])), cols)
        y = y.reshape(n, m, *layout.out).astype(x.dtype, copy=False)
        return _add_bias(y, b)

    return run


def _direct(x: Any, w: Any, layout: Layout, group: int) -> Any | None:
    """The im2col-free kernel that fits this convolution, if any (see ``conv_direct``)."""
    if group > 1 and group == x.shape[1]:
        return conv_direct.depthwise
    if group == 1 and all(k == 1 for k in layout.kernel) and not any(layout.begin + layout.end):
        return conv_direct.pointwise
    return None


def _col2im(xp: Any, cols: Any, layout: Layout, size: Sequence[int]) -> Any:
    """Sum columns (N, C, K, out...) into a zero image (N, C, size...): the adjoint of im2col."""
    n, c = cols.shape[:2]
    image = xp.zeros((n, c, *size), dtype=cols.dtype)
    for k, offset in enumerate(np.ndindex(*layout.kernel)):
        index = (slice(None), slice(None)) + tuple(
            slice(i * d, i * d + (o - 1) * s + 1, s)
            for i, d, o, s in zip(offset, layout.dilations, layout.out, layout.strides)
        )
        image[index] += cols[:, :, k]
    return image


def _crop(image: Any, begin: Sequence[int], size: Sequence[int]) -> Any:
    """The (N, C, size...) block of ``image`` starting at spatial position ``begin``."""
    return image[(slice(None), slice(None), *(slice(b, b + s) for b, s in zip(begin, size)))]


def _transpose_geometry(
    window: WindowAttrs,
    output_padding: tuple[int, ...] | None,
    output_shape: tuple[int, ...] | None,
    spatial: Sequence[int],
    kernel: Sequence[int],
) -> tuple[Layout, list[int], list[int], list[int]]:
    """ConvTranspose placement: the col2im layout, crop start, output size and image size."""
    rank = len(spatial)
    strides = window.strides or (1,) * rank
    dilations = window.dilations or (1,) * rank
    extra = output_padding or (0,) * rank
    layout = Layout(tuple(kernel), strides, dilations, (0,) * rank, (0,) * rank, tuple(spatial))
    natural = [s * (n - 1) + e for s, n, e in zip(strides, spatial, layout.spans)]
    if output_shape is not None or window.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is not None:
            out = list(output_shape[-rank:])
        else:
            out = [n * s for n, s in zip(spatial, strides)]
        total = [f + e - o for f, e, o in zip(natural, extra, out)]
        if window.auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
    else:
        pads = window.pads if window.pads and window.auto_pad == "NOTSET" else (0,) * (2 * rank)
        begin = list(pads[:rank])
        out = [f + e - b - p for f, e, b, p in zip(natural, extra, begin, pads[rank:])]
    size = [max(f, b + o) for f, b, o in zip(natural, begin, out)]
    return layout, begin, out, size


@op("ConvTranspose", 1, 11, 22)
def conv_transpose(ctx: NodeContext, xp: Any):
    """Transposed (fractionally strided) convolution: GEMM per group, then col2im."""
    window = window_attrs(ctx)
    group = ctx.attr("group", 1)
    output_padding = _int_tuple(ctx, "output_padding")
    output_shape = _int_tuple(ctx, "output_shape")
    if group < 1:
        raise ctx.error(f"'group' must be positive, got {group}")

    def run(x, w, b=None):
        n, c = x.shape[:2]
        kernel = w.shape[2:]
        if w.shape[0] != c or c % group:
            raise ValueError(f"input {x.shape} and weights {w.shape} do not fit group={group}")
        layout, begin, out, size = _transpose_geometry(
            window, output_padding, output_shape, x.shape[2:], kernel
        )
        wt = w.reshape(group, c // group, -1).swapaxes(1, 2)  # (g, M/g * K, C/g)
        cols = _grouped_gemm(xp, wt, x.reshape(n, group, c // group, -1))
        cols = cols.reshape(n, group * w.shape[1], math.prod(kernel), *x.shape[2:])
        image = _col2im(xp, cols, layout, size)
        y = xp.ascontiguousarray(_crop(image, begin, out)).astype(x.dtype, copy=False)
        return _add_bias(y, b)

    return run


@op("Col2Im", 18)
def col2im(ctx: NodeContext, xp: Any):
    """Rearrange column blocks (N, C*prod(block), L) back into an image, summing overlaps."""
    window = window_attrs(ctx)

    def run(x, image_shape, block_shape):
        image = [int(v) for v in image_shape]
        kernel = [int(v) for v in block_shape]
        layout = window.layout(image, kernel)
        n = x.shape[0]
        blocks = math.prod(kernel)
        if x.shape[1] % blocks or x.shape[2] != math.prod(layout.out):
            raise ValueError(f"input {x.shape} does not fit image {image} and blocks {kernel}")
        cols = x.reshape(n, x.shape[1] // blocks, blocks, *layout.out)
        padded = [i + b + e for i, b, e in zip(image, layout.begin, layout.end)]
        return xp.ascontiguousarray(_crop(_col2im(xp, cols, layout, padded), layout.begin, image))

    return run


def _sample(xp: Any, x: Any, positions: list[Any]) -> Any:
    """Multilinear samples of ``x`` (N, G, Cg, spatial...) at fractional positions, zero outside.

    ``positions`` holds one (N, G, Q) array of coordinates per spatial axis; the result is
    (N, G, Cg, Q).
    """
    spatial = x.shape[3:]
    flat = x.reshape(*x.shape[:3], -1)
    lows = [xp.floor(p) for p in positions]
    fracs = [p - lo for p, lo in zip(positions, lows)]
    lows = [lo.astype(np.int64) for lo in lows]
    strides = [math.prod(spatial[i + 1 :]) for i in range(len(spatial))]
    result = None
    for corner in product((0, 1), repeat=len(spatial)):
        weight = 1.0
        index = 0
        inside = True
        for lo, frac, step, size, stride in zip(lows, fracs, corner, spatial, strides):
            at = lo + step
            weight = weight * (frac if step else 1 - frac)
            inside = inside & (at >= 0) & (at < size)
            index = index + xp.clip(at, 0, size - 1) * stride
        values = xp.take_along_axis(flat, index[:, :, None, :], axis=-1)
        term = values * xp.where(inside, weight, 0)[:, :, None, :]
        result = term if result is None else result + term
    return result


@op("DeformConv", 19, 22)
def deform_conv(ctx: NodeContext, xp: Any):
    """Deformable convolution: taps moved by learned offsets, optionally masked, then GEMM."""
    window = window_attrs(ctx)
    if window.auto_pad != "NOTSET":
        raise ctx.error("DeformConv has no auto_pad")
    group = ctx.attr("group", 1)
    offset_group = ctx.attr("offset_group", 1)
    if group < 1 or offset_group < 1:
        raise ctx.error("'group' and 'offset_group' must be positive")

    def run(x, w, offset, b=None, mask=None):
        n, c = x.shape[:2]
        m = w.shape[0]
        if c != w.shape[1] * group or m % group or c % offset_group:
            raise ValueError(f"input {x.shape} and weights {w.shape} do not fit the groups")
        layout = window.layout(x.shape[2:], w.shape[2:])
        rank = len(layout.kernel)
        taps = math.prod(layout.kernel)
        dtype = accumulation_dtype(x.dtype)
        # Undeformed sampling position of every (tap, output position) along each axis.
        grids = np.meshgrid(
            *(np.arange(k) * d for k, d in zip(layout.kernel, layout.dilations)),
            *(np.arange(o) * s - b for o, s, b in zip(layout.out, layout.strides, layout.begin)),
            indexing="ij",
        )
        base = [(grids[i] + grids[rank + i]).reshape(taps, -1) for i in range(rank)]
        shifts = offset.astype(dtype, copy=False).reshape(n, offset_group, taps, rank, -1)
        positions = [
            (xp.asarray(base[i], dtype=dtype) + shifts[:, :, :, i]).reshape(n, offset_group, -1)
            for i in range(rank)
        ]
        xg = x.astype(dtype, copy=False).reshape(n, offset_group, c // offset_group, *x.shape[2:])
        samples = _sample(xp, xg, positions)  # (N, og, C/og, taps * P)
        if mask is not None:
            samples = samples * mask.astype(dtype, copy=False).reshape(n, offset_group, 1, -1)
        cols = samples.reshape(n, group, -1, math.prod(layout.out))
        y = _grouped_gemm(xp, w.reshape(group, m // group, math.prod(w.shape[1:])), cols)
        y = y.reshape(n, m, *layout.out).astype(x.dtype, copy=False)
        return _add_bias(y, b)

    return run
