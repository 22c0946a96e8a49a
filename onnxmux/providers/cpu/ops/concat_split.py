"""Joining and splitting along an axis: Concat, Split."""

from __future__ import annotations

import itertools
import math
from typing import Sequence

from onnxmux.providers.cpu.registry import op


@op("Concat", 1, 4)
def concat(ctx, xp):
    """Join the inputs along ``axis`` (default 1 before opset 4, where it became required)."""
    axis = ctx.attr("axis", 1) if ctx.opset < 4 else ctx.attr("axis")

    def run(*inputs):
        return xp.concatenate(inputs, axis=axis)

    return run


def _split(x, axis: int, sizes: Sequence[int] | None, parts: int) -> tuple:
    """``x`` cut along ``axis`` into consecutive parts of the given sizes; without sizes, into
    ``parts`` chunks of ceil(dim / parts), the last one taking what is left."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
    axis %= x.ndim
    dim = x.shape[axis]
    if sizes is None:
        chunk = math.ceil(dim / parts)
        sizes = [max(0, min(chunk, dim - i * chunk)) for i in range(parts)]
    if sum(sizes) != dim or min(sizes, default=0) < 0:
        raise ValueError(f"split sizes {list(sizes)} do not add up to dim {dim}")
    lead = (slice(None),) * axis
    ends = itertools.accumulate(sizes)
    return tuple(x[lead + (slice(end - size, end),)] for size, end in zip(sizes, ends))


def _parts(ctx) -> int:
    """The number of equal parts: ``num_outputs`` (opset 18) or the node's output count."""
    parts = ctx.attr("num_outputs", ctx.num_outputs)
    if parts < 1:
        raise ctx.error(f"num_outputs must be positive, got {parts}")
    return parts


@op("Split", 1, 2)
def split_v2(ctx, xp):
    """Split along ``axis`` into the sizes of the ``split`` attribute (or input, opset 1) or equal parts."""
    axis = ctx.attr("axis", 0)
    split_attr = ctx.attr("split", None)
    parts = _parts(ctx)

    def run(x, split=None):
        return _split(x, axis, split_attr if split is None else split.tolist(), parts)

    return run


@op("Split", 13, 18)
def split(ctx, xp):
    """Split along ``axis`` into the sizes of the ``split`` input, or ``num_outputs`` equal parts."""
    axis = ctx.attr("axis", 0)
    if "num_outputs" in ctx.attrs and ctx.num_inputs > 1:
        raise ctx.error("the split input and the num_outputs attribute cannot both be given")
    parts = _parts(ctx)

    def run(x, split=None):
        return _split(x, axis, None if split is None else split.tolist(), parts)

    return run
