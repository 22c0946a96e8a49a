"""Pooling over strided windows: MaxPool, AveragePool, LpPool, their Global forms, MaxUnpool."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.conv import Layout, WindowAttrs, sliding_windows, window_attrs
from onnxmux.providers.cpu.ops.reduce import by_rows, float_dtype, trailing_mean
from onnxmux.providers.cpu.registry import op


def _fold_windows(
    xp: Any, windows: Any, layout: Layout, combine: Any, dtype: Any = None
) -> Any:
    """Combine the taps of every window with the binary ufunc ``combine``, one offset at a time.

    Each step is one large vectorized operation over all windows, far faster than reducing the
    small trailing axes of the strided view. The result is a fresh (N, C, out...) array.
    """
    offsets = np.ndindex(*layout.kernel)
    total = windows[(..., *next(offsets))].astype(windows.dtype if dtype is None else dtype)
    for offset in offsets:
        combine(total, windows[(..., *offset)], out=total)
    return total


def _lowest(dtype: np.dtype) -> Any:
    """The smallest value of a dtype: padding that never wins a max."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    if dtype.kind == "b":
        return False
    return -np.inf


def _pool_attrs(ctx: NodeContext) -> tuple[WindowAttrs, bool]:
    """The window attributes (kernel_shape required) and ceil_mode of a pooling node."""
    return window_attrs(ctx, require_kernel=True), bool(ctx.attr("ceil_mode", 0))


def _max_indices(
    xp: Any, arg: Any, layout: Layout, shape: tuple[int, ...], column_major: bool
) -> Any:
    """Flat indices into the unpadded input of the window positions ``arg`` picked per output."""
    rank = len(layout.kernel)
    spatial = shape[2:]
    taps = xp.unravel_index(arg, layout.kernel)
    if column_major:
        steps = [math.prod(spatial[:i]) for i in range(rank)]
    else:
        steps = [math.prod(spatial[i + 1 :]) for i in range(rank)]
    plane = math.prod(spatial)
    planes = xp.arange(shape[0] * shape[1], dtype=np.int64) * plane
    flat = planes.reshape(shape[0], shape[1], *(1,) * rank)
    for i in range(rank):
        start = xp.arange(layout.out[i], dtype=np.int64) * layout.strides[i] - layout.begin[i]
        start = start.reshape(-1, *(1,) * (rank - 1 - i))
        flat = flat + (start + xp.asarray(taps[i], dtype=np.int64) * layout.dilations[i]) * steps[i]
    return flat


@op("MaxPool", 1, 8, 10, 11, 12, 22)
def max_pool(ctx: NodeContext, xp: Any):
    """Maximum of each window (padding never wins), plus the flat index of each maximum if asked."""
    window, ceil_mode = _pool_attrs(ctx)
    storage_order = ctx.attr("storage_order", 0)
    if storage_order not in (0, 1):
        raise ctx.error(f"'storage_order' must be 0 or 1, got {storage_order}")
    want_indices = ctx.has_output(1)

    def run(x):
        layout = window.layout(x.shape[2:], ceil_mode=ceil_mode)
        if not want_indices:
            return _separable_max(xp, x, layout)
        windows = sliding_windows(xp, x, layout, _lowest(x.dtype))
        flat = windows.reshape(*windows.shape[: 2 + len(layout.out)], -1)
        arg = xp.argmax(flat, axis=-1)
        y = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        return y, _max_indices(xp, arg, layout, x.shape, storage_order == 1)

    return run


def _separable_max(xp: Any, x: Any, layout: Layout) -> Any:
    """Max over each window as a max along one spatial axis after another (last axis first).

    Along an axis, each kernel tap is one ``maximum`` over the output positions whose read falls
    inside the input, so nothing is padded; a tap that every position reads starts the result
    (else it starts at the dtype's lowest value, which padding is). A k·k window costs 2(k-1)
    passes over ever smaller arrays instead of k·k - 1 over the output.
    """
    for axis in reversed(range(len(layout.kernel))):
        x = _max_along(xp, x, 2 + axis, *(v[axis] for v in (
            layout.kernel, layout.strides, layout.dilations, layout.begin, layout.out)))
    return x


def _max_along(xp: Any, x: Any, axis: int, kernel: int, stride: int, dilation: int, begin: int, out: int) -> Any:
    """The 1-D max pool of ``x`` along ``axis``: a fresh array with ``out`` positions there."""
    length = x.shape[axis]
    spans = []  # per tap: first and last output position whose read is inside, first read
    for tap in range(kernel):
        shift = tap * dilation - begin
        first = max(0, -(shift // stride))
        last = min(out - 1, (length - 1 - shift) // stride)
        if first <= last:
            spans.append((first, last, first * stride + shift))
    full = next((span for span in spans if span[:2] == (0, out - 1)), None)
    lead = (slice(None),) * axis

    def read(first: int, last: int, start: int) -> Any:
        return x[(*lead, slice(start, start + (last - first) * stride + 1, stride))]

    if full is None:
        y = xp.full((*x.shape[:axis], out, *x.shape[axis + 1 :]), _lowest(x.dtype), dtype=x.dtype)
    else:
        y = read(*full).copy()  # a copy even when the tap reads all of x: y is written to
        spans.remove(full)
    for first, last, start in spans:
        target = y[(*lead, slice(first, last + 1))]
        xp.maximum(target, read(first, last, start), out=target)
    return y


def _window_sums(xp: Any, x: Any, layout: Layout) -> Any:
    """Sum of each zero-padded window, accumulated in at least float32."""
    return _fold_windows(xp, sliding_windows(xp, x, layout), layout, xp.add, float_dtype(x.dtype))


def _window_counts(xp: Any, layout: Layout, spatial: tuple[int, ...], include_pads: bool) -> Any:
    """How many positions of each window count for an average: input only, or input plus pads."""
    if include_pads:
        # Explicit pads count; the extra columns a ceil-mode window overhangs do not.
        padded = tuple(n + b + e for n, b, e in zip(spatial, layout.begin, layout.end))
        ones = xp.ones((1, 1, *padded), dtype=np.float32)
        layout = replace(layout, begin=(0,) * len(spatial), end=(0,) * len(spatial))
    else:
        ones = xp.ones((1, 1, *spatial), dtype=np.float32)
    return _window_sums(xp, ones, layout)[0, 0]


@op("AveragePool", 1, 7, 10, 11, 19, 22)
def average_pool(ctx: NodeContext, xp: Any):
    """Mean of each window, counting padded positions only when count_include_pad is set."""
    window, ceil_mode = _pool_attrs(ctx)
    include_pads = bool(ctx.attr("count_include_pad", 0))

    def run(x):
        layout = window.layout(x.shape[2:], ceil_mode=ceil_mode)
        counts = _window_counts(xp, layout, x.shape[2:], include_pads)
        return (_window_sums(xp, x, layout) / counts).astype(x.dtype)

    return run


def _lp_order(ctx: NodeContext) -> float:
    """The validated ``p`` attribute of an Lp pool."""
    p = ctx.attr("p", 2)
    if p <= 0:
        raise ctx.error(f"'p' must be positive, got {p}")
    return p


def _powered(xp: Any, x: Any, p: float) -> Any:
    """``|x| ** p`` in at least float32."""
    return xp.abs(x).astype(float_dtype(x.dtype)) ** p


@op("LpPool", 1, 2, 11, 18, 22)
def lp_pool(ctx: NodeContext, xp: Any):
    """The p-norm of each window (padding contributes zeros)."""
    window, ceil_mode = _pool_attrs(ctx)
    p = _lp_order(ctx)

    def run(x):
        layout = window.layout(x.shape[2:], ceil_mode=ceil_mode)
        return (_window_sums(xp, _powered(xp, x, p), layout) ** (1.0 / p)).astype(x.dtype)

    return run


def _spatial_axes(x: Any) -> tuple[int, ...]:
    """The axes after N and C."""
    return tuple(range(2, x.ndim))


@op("GlobalAveragePool", 1, 22)
def global_average_pool(ctx: NodeContext, xp: Any):
    """Mean over all spatial axes, kept as size-1 axes."""

    def run(x):
        axes = _spatial_axes(x)
        if by_rows(x, axes):
            return trailing_mean(xp, x, 2)
        mean = xp.mean(x, axis=axes, keepdims=True, dtype=float_dtype(x.dtype))
        return mean.astype(x.dtype)

    return run


@op("GlobalMaxPool", 1, 22)
def global_max_pool(ctx: NodeContext, xp: Any):
    """Maximum over all spatial axes, kept as size-1 axes."""

    def run(x):
        return xp.max(x, axis=_spatial_axes(x), keepdims=True)

    return run


@op("GlobalLpPool", 1, 2, 22)
def global_lp_pool(ctx: NodeContext, xp: Any):
    """The p-norm over all spatial axes, kept as size-1 axes."""
    p = _lp_order(ctx)

    def run(x):
        total = xp.sum(_powered(xp, x, p), axis=_spatial_axes(x), keepdims=True)
        return (total ** (1.0 / p)).astype(x.dtype)

    return run


@op("MaxUnpool", 9, 11, 22)
def max_unpool(ctx: NodeContext, xp: Any):
    """Scatter pooled values to the flat positions MaxPool recorded; zeros everywhere else.

    The indices address the unpadded unpooling of ``X``; an explicit ``output_shape`` replaces
    ``pads``, extending (or cutting) that result at the end of each spatial axis.
    """
    window = window_attrs(ctx, require_kernel=True)
    if window.auto_pad != "NOTSET":
        raise ctx.error("MaxUnpool has no auto_pad")
    rank = len(window.kernel)
    strides = window.strides or (1,) * rank
    pads = window.pads or (0,) * (2 * rank)

    def run(x, indices, output_shape=None):
        trims = (0,) * (2 * rank) if output_shape is not None else pads
        natural = x.shape[:2] + tuple(
            (n - 1) * s + k - b - e
            for n, s, k, b, e in zip(
                x.shape[2:], strides, window.kernel, trims[:rank], trims[rank:]
            )
        )
        y = xp.zeros(math.prod(natural), dtype=x.dtype)
        y[indices.reshape(-1)] = x.reshape(-1)
        y = y.reshape(natural)
        if output_shape is None:
            return y
        shape = tuple(int(v) for v in output_shape)
        out = xp.zeros(shape, dtype=x.dtype)
        common = tuple(slice(0, min(a, b)) for a, b in zip(shape, natural))
        out[common] = y[common]
        return out

    return run
