"""Shape-only operators: Reshape, Flatten, Squeeze, Unsqueeze, Expand, Identity, Shape, Size."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from onnxmux.core.limits import check_tensor_bytes
from onnxmux.providers.cpu.registry import op


def _normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    """Axes with negative values counted from the back; raises when out of range."""
    normalized = []
    for axis in axes:
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        normalized.append(axis % rank)
    return normalized


def _reshape_target(in_shape: Sequence[int], shape: Sequence[int], allowzero: bool) -> list[int]:
    """Reshape's requested shape with 0 entries copied from the input unless ``allowzero``."""
    if allowzero:
        return list(shape)
    return [in_shape[i] if dim == 0 else dim for i, dim in enumerate(shape)]


@op("Reshape", 1)
def reshape_v1(ctx, xp):
    """Reshape to the ``shape`` attribute (0 copies the input dim, -1 is inferred)."""
    shape = ctx.attr("shape")

    def run(data):
        return xp.reshape(data, _reshape_target(data.shape, shape, False))

    return run


@op("Reshape", 5, 14)
def reshape(ctx, xp):
    """Reshape to the ``shape`` input; 0 copies the input dim unless ``allowzero`` (opset 14)."""
    allowzero = bool(ctx.attr("allowzero", 0))

    def run(data, shape):
        return xp.reshape(data, _reshape_target(data.shape, shape.tolist(), allowzero))

    return run


@op("Flatten", 1)
def flatten(ctx, xp):
    """Flatten to 2-D: dims before ``axis`` form the rows, the rest the columns."""
    axis = ctx.attr("axis", 1)

    def run(x):
        split = axis + x.ndim if axis < 0 else axis
        if not 0 <= split <= x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        return xp.reshape(x, (math.prod(x.shape[:split]), math.prod(x.shape[split:])))

    return run


def _squeeze(xp, x, axes: list[int] | None):
    """``x`` without the size-1 dims ``axes`` (all size-1 dims when None)."""
    if axes is None:
        return xp.reshape(x, [d for d in x.shape if d != 1])
    dropped = set(_normalize_axes(axes, x.ndim))
    if any(x.shape[a] != 1 for a in dropped):
        raise ValueError(f"cannot squeeze axes {axes} of shape {x.shape}")
    return xp.reshape(x, [d for i, d in enumerate(x.shape) if i not in dropped])


def _unsqueeze(xp, x, axes: list[int]):
    """``x`` with size-1 dims inserted at ``axes`` (positions in the output)."""
    rank = x.ndim + len(axes)
    inserted = set(_normalize_axes(axes, rank))
    if len(inserted) != len(axes):
        raise ValueError(f"repeated axes in {axes}")
    dims = iter(x.shape)
    return xp.reshape(x, [1 if i in inserted else next(dims) for i in range(rank)])


@op("Squeeze", 1)
def squeeze_v1(ctx, xp):
    """Remove the size-1 dims listed in the ``axes`` attribute (all size-1 dims by default)."""
    axes = ctx.attr("axes", None)

    def run(x):
        return _squeeze(xp, x, axes)

    return run


@op("Squeeze", 13)
def squeeze(ctx, xp):
    """Remove the size-1 dims listed in the ``axes`` input (all size-1 dims by default)."""

    def run(x, axes=None):
        return _squeeze(xp, x, None if axes is None else axes.reshape(-1).tolist())

    return run


@op("Unsqueeze", 1)
def unsqueeze_v1(ctx, xp):
    """Insert size-1 dims at the output positions listed in the ``axes`` attribute."""
    axes = ctx.attr("axes")

    def run(x):
        return _unsqueeze(xp, x, axes)

    return run


@op("Unsqueeze", 13)
def unsqueeze(ctx, xp):
    """Insert size-1 dims at the output positions listed in the ``axes`` input."""

    def run(x, axes):
        return _unsqueeze(xp, x, axes.reshape(-1).tolist())

    return run


@op("Expand", 8)
def expand(ctx, xp):
    """Broadcast the input against ``shape`` (bidirectionally, like ``x * ones(shape)``)."""
    where = ctx.describe()

    def run(x, shape):
        target = np.broadcast_shapes(x.shape, tuple(shape.tolist()))
        check_tensor_bytes(where, target, x.dtype)
        return xp.ascontiguousarray(xp.broadcast_to(x, target))

    return run


@op("Identity", 1)
def identity(ctx, xp):
    """The input unchanged (tensor, sequence or optional)."""

    def run(x):
        return x

    return run


@op("Shape", 1, 15)
def shape(ctx, xp):
    """The input's shape as a 1-D int64 tensor, sliced by ``start``/``end`` (opset 15)."""
    dims = slice(ctx.attr("start", 0), ctx.attr("end", None))

    def run(x):
        return xp.asarray(x.shape[dims], dtype=np.int64)

    return run


@op("Size", 1)
def size(ctx, xp):
    """The input's number of elements as an int64 scalar."""

    def run(x):
        return xp.asarray(x.size, dtype=np.int64)

    return run
