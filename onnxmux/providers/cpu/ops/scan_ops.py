"""Ordered scans along an axis: TopK, CumSum and CumProd."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op


def _along(ndim: int, axis: int, part: slice) -> tuple[slice, ...]:
    """An index selecting ``part`` of ``axis`` and everything of the other axes."""
    index = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def _top_k(ctx: NodeContext, xp: Any, k_attribute: int | None):
    """A TopK kernel; ``k_attribute`` is the TopK-1 attribute, None where K is an input."""
    axis = ctx.attr("axis", -1)
    largest = bool(ctx.attr("largest", 1))

    def run(x, k=None):
        count = k_attribute if k_attribute is not None else int(xp.asarray(k).reshape(-1)[0])
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        length = x.shape[axis]
        if not 0 <= count <= length:
            raise ValueError(f"k={count} is outside [0, {length}] for axis {axis}")
        if largest:
            # A stable ascending sort of the reversed axis, read backwards, orders values
            # descending with equal values by ascending index.
            flipped = xp.argsort(xp.flip(x, axis), axis=axis, kind="stable")
            order = length - 1 - xp.flip(flipped, axis)
        else:
            order = xp.argsort(x, axis=axis, kind="stable")
        indices = order[_along(x.ndim, axis, slice(0, count))]
        return xp.take_along_axis(x, indices, axis=axis), indices.astype(np.int64, copy=False)

    return run


@op("TopK", 1)
def top_k_1(ctx: NodeContext, xp: Any):
    """The ``k`` (attribute) largest elements along ``axis`` and their indices, sorted."""
    k = ctx.attr("k")
    if k < 0:
        raise ctx.error(f"'k' must be non-negative, got {k}")
    return _top_k(ctx, xp, k)


@op("TopK", 10, 11, 24)
def top_k(ctx: NodeContext, xp: Any):
    """The K largest (or smallest) elements along ``axis`` and their indices, ties by index."""
    return _top_k(ctx, xp, None)


def _cumulative(ctx: NodeContext, xp: Any, scan: Any, identity: int):
    """A kernel running ``scan`` (cumsum or cumprod) along the axis input."""
    exclusive = bool(ctx.attr("exclusive", 0))
    reverse = bool(ctx.attr("reverse", 0))

    def run(x, axis):
        axis = int(xp.asarray(axis).reshape(-1)[0])
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        if reverse:
            x = xp.flip(x, axis)
        y = scan(x, axis=axis, dtype=x.dtype)
        if exclusive:
            # Shift by one along the axis, starting from the operation's identity.
            first = xp.full_like(y[_along(x.ndim, axis, slice(0, 1))], identity)
            y = xp.concatenate([first, y[_along(x.ndim, axis, slice(0, -1))]], axis=axis)
        return xp.flip(y, axis) if reverse else y

    return run


@op("CumSum", 11, 14)
def cum_sum(ctx: NodeContext, xp: Any):
    """Running sum along an axis (optionally exclusive and/or reversed)."""
    return _cumulative(ctx, xp, xp.cumsum, 0)


@op("CumProd", 26)
def cum_prod(ctx: NodeContext, xp: Any):
    """Running product along an axis (optionally exclusive and/or reversed)."""
    return _cumulative(ctx, xp, xp.cumprod, 1)
