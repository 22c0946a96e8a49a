"""Strided slicing: Slice."""

from __future__ import annotations

from typing import Any, Sequence

from onnxmux.providers.cpu.registry import op


def _ints(values: Any) -> list[int] | None:
    """An optional 1-D int tensor as a list of Python ints."""
    return None if values is None else values.tolist()


def _clamped(start: int, end: int, step: int, dim: int) -> slice:
    """The slice of one axis after ONNX's rules: negative values count from the back, then
    start/end clamp to [0, dim] (step > 0) or to [0, dim-1] and [-1, dim-1] (step < 0)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    end = min(max(end, -1), dim - 1)
    return slice(min(max(start, 0), dim - 1), None if end < 0 else end, step)


def _index(
    shape: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> tuple[slice, ...]:
    """The basic index selecting ``starts:ends:steps`` on ``axes`` of a tensor of ``shape``."""
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError("starts, ends, axes and steps must have the same length")
    index = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        if step == 0:
            raise ValueError("slice step cannot be 0")
        index[axis % rank] = _clamped(start, end, step, shape[axis])
    return tuple(index)


@op("Slice", 1)
def slice_v1(ctx, xp):
    """Slice with the ``starts``/``ends``/``axes`` attributes (step 1)."""
    starts = ctx.attr("starts")
    ends = ctx.attr("ends")
    axes = ctx.attr("axes", None)

    def run(data):
        return data[_index(data.shape, starts, ends, axes, None)]

    return run


@op("Slice", 10)
def slice_(ctx, xp):
    """Slice with the ``starts``/``ends``/``axes``/``steps`` inputs (negative steps go backward)."""

    def run(data, starts, ends, axes=None, steps=None):
        return data[_index(data.shape, _ints(starts), _ints(ends), _ints(axes), _ints(steps))]

    return run
