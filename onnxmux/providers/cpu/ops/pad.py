"""Growing and shrinking tensors at their borders: Pad, CenterCropPad, Tile."""

from __future__ import annotations

from typing import Any, Sequence

from onnxmux.core.limits import check_tensor_bytes
from onnxmux.providers.cpu.registry import op

_MODES = {"constant", "reflect", "edge", "wrap"}


def _pad(xp: Any, x: Any, pads: Sequence[int], mode: str, value: Any = None) -> Any:
    """``x`` padded by ``pads`` ([begin per axis..., end per axis...]; negative values crop).

    Negative amounts are cut off first, then positive amounts are added to what remains
    (filled per ``mode``). ``value`` fills constant padding; None means 0, "" or False.
    """
    rank = x.ndim
    if len(pads) != 2 * rank:
        raise ValueError(f"pads has {len(pads)} values; rank {rank} needs {2 * rank}")
    begins, ends = pads[:rank], pads[rank:]
    x = x[tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begins, ends, x.shape))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
    if not any(b or e for b, e in widths):
        return x
    if mode != "constant":
        return xp.pad(x, widths, mode=mode)
    fill = ("" if x.dtype == object else 0) if value is None else value
    # A 0-d array of the data's dtype keeps object (string) fills as Python str.
    return xp.pad(x, widths, mode="constant", constant_values=xp.asarray(fill, dtype=x.dtype))


def _full_pads(pads: Sequence[int], axes: Sequence[int], rank: int) -> list[int]:
    """Pads given for ``axes`` spread to every axis of a rank-``rank`` tensor (0 elsewhere)."""
    if len(pads) != 2 * len(axes):
        raise ValueError(f"pads has {len(pads)} values; {len(axes)} axes need {2 * len(axes)}")
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        full[axis % rank] = pads[i]
        full[axis % rank + rank] = pads[i + len(axes)]
    return full


def _mode(ctx) -> str:
    mode = ctx.attr("mode", "constant")
    if mode not in _MODES:
        raise ctx.error(f"unknown mode '{mode}'")
    return mode


@op("Pad", 1, 2)
def pad_v2(ctx, xp):
    """Pad by the ``pads`` attribute (``paddings`` in opset 1) with a constant ``value`` or by reflect/edge."""
    mode = _mode(ctx)
    pads = ctx.attr("paddings" if ctx.opset < 2 else "pads")
    value = ctx.attr("value", 0.0)

    def run(data):
        return _pad(xp, data, pads, mode, value)

    return run


@op("Pad", 11, 18)
def pad(ctx, xp):
    """Pad by the ``pads`` input (restricted to ``axes``, opset 18) in constant/reflect/edge/wrap mode."""
    mode = _mode(ctx)

    def run(data, pads, constant_value=None, axes=None):
        amounts = pads.tolist()
        if axes is not None:
            amounts = _full_pads(amounts, axes.tolist(), data.ndim)
        value = None if constant_value is None else constant_value.reshape(-1)[0]
        return _pad(xp, data, amounts, mode, value)

    return run


@op("CenterCropPad", 18)
def center_crop_pad(ctx, xp):
    """Crop or zero-pad ``axes`` (all by default) to ``shape``, keeping the input centered."""
    axes = ctx.attr("axes", None)

    def run(input_data, shape):
        rank = input_data.ndim
        target = shape.tolist()
        chosen = list(range(rank)) if axes is None else axes
        if len(target) != len(chosen):
            raise ValueError(f"shape has {len(target)} values for {len(chosen)} axes")
        growth = [t - input_data.shape[a] for t, a in zip(target, chosen)]
        # A crop window starts rounded down and odd padding goes to the end: both round toward zero.
        begins = [int(g / 2) for g in growth]
        ends = [g - b for g, b in zip(growth, begins)]
        return _pad(xp, input_data, _full_pads(begins + ends, chosen, rank), "constant")

    return run


@op("Tile", 1)
def tile_v1(ctx, xp):
    """Repeat the whole tensor ``tiles`` times along ``axis`` (both scalar inputs)."""
    where = ctx.describe()

    def run(x, tiles, axis):
        reps = [1] * x.ndim
        reps[int(axis) % x.ndim] = int(tiles)
        return _tile(where, xp, x, reps)

    return run


@op("Tile", 6)
def tile(ctx, xp):
    """Repeat the tensor ``repeats[i]`` times along each axis i."""
    where = ctx.describe()

    def run(x, repeats):
        reps = repeats.tolist()
        if len(reps) != x.ndim:
            raise ValueError(f"repeats has {len(reps)} values for rank {x.ndim}")
        return _tile(where, xp, x, reps)

    return run


def _tile(where: str, xp, x, reps: list[int]):
    """``x`` repeated ``reps[i]`` times along axis i, refused beyond the session's tensor size limit."""
    check_tensor_bytes(where, [d * r for d, r in zip(x.shape, reps)], x.dtype)
    return xp.tile(x, reps)
