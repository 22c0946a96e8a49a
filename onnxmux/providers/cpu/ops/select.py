"""Data-dependent selection: Trilu, NonZero, Unique, ReverseSequence."""

from __future__ import annotations

import numpy as np

from onnxmux.providers.cpu.registry import op


@op("Trilu", 14)
def trilu(ctx, xp):
    """Keep the upper (``upper``=1) or lower triangle of the last two dims from diagonal ``k``; zero the rest."""
    triangle = xp.triu if ctx.attr("upper", 1) else xp.tril

    def run(x, k=None):
        return triangle(x, 0 if k is None else int(k))

    return run


@op("NonZero", 9)
def nonzero(ctx, xp):
    """The coordinates of the non-zero elements, one row per axis, as int64 of shape (rank, count)."""

    def run(x):
        return xp.ascontiguousarray(xp.argwhere(x).T.astype(np.int64))

    return run


@op("Unique", 11)
def unique(ctx, xp):
    """Unique values (or slices along ``axis``), sorted or in first-occurrence order, with the
    first-occurrence indices, the inverse indices and the counts (all int64)."""
    axis = ctx.attr("axis", None)
    keep_sorted = bool(ctx.attr("sorted", 1))

    def run(x):
        if axis is not None and not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        along = None if axis is None else axis % x.ndim
        values, first, inverse, counts = xp.unique(
            x, return_index=True, return_inverse=True, return_counts=True, axis=along
        )
        inverse = inverse.reshape(-1)
        if not keep_sorted:
            order = xp.argsort(first)
            rank = xp.empty_like(order)
            rank[order] = xp.arange(order.size)
            values = xp.take(values, order, axis=along)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        return values, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)

    return run


@op("ReverseSequence", 10)
def reverse_sequence(ctx, xp):
    """Reverse the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch entry b."""
    batch_axis = ctx.attr("batch_axis", 1)
    time_axis = ctx.attr("time_axis", 0)
    if {batch_axis, time_axis} != {0, 1}:
        raise ctx.error(f"batch_axis and time_axis must be 0 and 1, got {batch_axis} and {time_axis}")

    def run(x, sequence_lens):
        steps = xp.arange(x.shape[time_axis])
        lens = sequence_lens.astype(np.int64).reshape(-1, 1)
        # source[b, t]: the mirrored step inside the sequence, the step itself after it.
        source = xp.where(steps < lens, lens - 1 - steps, steps)
        if time_axis == 0:
            source = source.T
        source = source.reshape(source.shape + (1,) * (x.ndim - 2))
        return xp.take_along_axis(x, xp.broadcast_to(source, x.shape), axis=time_axis)

    return run
