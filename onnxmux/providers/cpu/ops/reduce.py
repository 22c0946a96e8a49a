"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, ArgMax and ArgMin."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.registry import op

#: ``reduce(xp, x, axes, keepdims)``: the reduction of ``x`` over ``axes``, in the dtype of ``x``.
Reducer = Callable[[Any, Any, tuple[int, ...], bool], Any]


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """Where sums and products of ``dtype`` accumulate, for this family's kernels.

    Integers, float32 and float64 stay as they are (BLAS handles the floats); narrower floats
    (float16, bfloat16) are widened to float32 and the caller casts the result back.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iub" or dtype in (np.float32, np.float64):
        return dtype
    return np.dtype(np.float32)


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The floating dtype statistics of ``dtype`` are computed in: float64 for 64-bit types."""
    wide = np.dtype(dtype) in (np.float64, np.int64, np.uint64)
    return np.dtype(np.float64 if wide else np.float32)


def _sum(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Sum."""
    return xp.sum(x, axis=axes, keepdims=keepdims, dtype=accumulation_dtype(x.dtype))


def _mean(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Arithmetic mean."""
    if by_rows(x, axes):
        return trailing_mean(xp, x, x.ndim - len(axes), keepdims)
    return xp.mean(x, axis=axes, keepdims=keepdims, dtype=float_dtype(x.dtype))


def by_rows(x: Any, axes: tuple[int, ...]) -> bool:
    """Whether a reduction of ``x`` over the sorted ``axes`` can run on ``x`` flattened to rows, as
    BLAS products: ``x`` is a non-empty float32/float64 array and ``axes`` are its trailing ones
    (none for a 0-d array)."""
    return x.size > 0 and x.dtype in sharded.BLAS_FLOATS and axes == tuple(range(x.ndim - len(axes), x.ndim))


def trailing_mean(xp: Any, x: Any, first: int, keepdims: bool = True) -> Any:
    """Mean of a non-empty float32/float64 ``x`` over its axes from ``first`` on, as the rows'
    product with a ones vector: one BLAS call instead of numpy's reduction machinery, which
    costs several times more on the small tensors of squeeze-and-excitation blocks."""
    lead = x.shape[:first]
    count = math.prod(x.shape[first:])
    mean = xp.matmul(x.reshape(math.prod(lead), count), xp.ones(count, dtype=x.dtype))
    mean /= count
    return mean.reshape((*lead, *(1,) * (x.ndim - first if keepdims else 0)))


def _prod(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Product (1 over an empty set)."""
    return xp.prod(x, axis=axes, keepdims=keepdims, dtype=accumulation_dtype(x.dtype))


def _extreme(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool, largest: bool) -> Any:
    """Maximum or minimum, with the identity of the comparison over an empty set."""
    pick = xp.max if largest else xp.min
    if x.size:
        return pick(x, axis=axes, keepdims=keepdims)
    return pick(x, axis=axes, keepdims=keepdims, initial=_identity_of_extreme(x.dtype, largest))


def _max(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Maximum (the lowest value over an empty set)."""
    return _extreme(xp, x, axes, keepdims, largest=True)


def _min(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Minimum (the highest value over an empty set)."""
    return _extreme(xp, x, axes, keepdims, largest=False)


def _identity_of_extreme(dtype: np.dtype, largest: bool) -> Any:
    """-inf/+inf, or the integer range's end, or False/True: what max/min of nothing yields."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return not largest
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if largest else info.max
    return -np.inf if largest else np.inf


def _l1(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Sum of absolute values."""
    return _sum(xp, xp.abs(x), axes, keepdims)


def _sum_square(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Sum of squares."""
    return _sum(xp, x * x, axes, keepdims)


def _l2(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Euclidean norm."""
    xf = x.astype(float_dtype(x.dtype), copy=False)
    return xp.sqrt(xp.sum(xf * xf, axis=axes, keepdims=keepdims))


def _log_sum(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Logarithm of the sum (-inf over an empty set)."""
    total = xp.sum(x.astype(float_dtype(x.dtype), copy=False), axis=axes, keepdims=keepdims)
    with np.errstate(divide="ignore"):
        return xp.log(total)


def _log_sum_exp(xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Logarithm of the sum of exponentials, shifted by the maximum for stability."""
    xf = x.astype(float_dtype(x.dtype), copy=False)
    peak = _max(xp, xf, axes, True)
    peak = xp.where(xp.isfinite(peak), peak, 0)
    with np.errstate(divide="ignore"):
        total = xp.log(xp.sum(xp.exp(xf - peak), axis=axes, keepdims=True)) + peak
    return total if keepdims else xp.squeeze(total, axis=axes)


def _reduction(ctx: NodeContext, xp: Any, reduce: Reducer, axes_input: bool):
    """A kernel applying ``reduce`` over the axes from the ``axes`` attribute or input."""
    keepdims = bool(ctx.attr("keepdims", 1))
    noop_when_empty = axes_input and bool(ctx.attr("noop_with_empty_axes", 0))
    static_axes = ctx.constant(1) if axes_input else ctx.attr("axes", None)

    def run(x, axes=None):
        axes = static_axes if static_axes is not None else axes
        if axes is None or len(axes) == 0:
            if noop_when_empty:
                return x
            axes = range(x.ndim)
        chosen = _normalize_axes(axes, x.ndim)
        return xp.asarray(reduce(xp, x, chosen, keepdims)).astype(x.dtype, copy=False)

    return run


def _normalize_axes(axes: Any, rank: int) -> tuple[int, ...]:
    """Sorted, distinct, non-negative axes; raises for axes outside the rank."""
    normalized = set()
    for axis in axes:
        axis = int(axis)
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        normalized.add(axis % rank)
    return tuple(sorted(normalized))


def _register(
    op_type: str,
    reduce: Reducer,
    attribute_versions: tuple[int, ...],
    input_versions: tuple[int, ...],
) -> None:
    """Register ``op_type``: axes as an attribute in older versions, as an input from then on."""

    def with_axes_attribute(ctx: NodeContext, xp: Any):
        return _reduction(ctx, xp, reduce, axes_input=False)

    def with_axes_input(ctx: NodeContext, xp: Any):
        return _reduction(ctx, xp, reduce, axes_input=True)

    for factory in (with_axes_attribute, with_axes_input):
        factory.__doc__ = f"{reduce.__doc__.rstrip('.')} over the chosen axes ({op_type})."
        factory.__qualname__ = factory.__name__ = f"{op_type.lower()}_{factory.__name__}"
    op(op_type, *attribute_versions)(with_axes_attribute)
    op(op_type, *input_versions)(with_axes_input)


_register("ReduceSum", _sum, (1, 11), (13,))
_register("ReduceMean", _mean, (1, 11, 13), (18,))
_register("ReduceMax", _max, (1, 11, 12, 13), (18, 20))
_register("ReduceMin", _min, (1, 11, 12, 13), (18, 20))
_register("ReduceProd", _prod, (1, 11, 13), (18,))
_register("ReduceL1", _l1, (1, 11, 13), (18,))
_register("ReduceL2", _l2, (1, 11, 13), (18,))
_register("ReduceLogSum", _log_sum, (1, 11, 13), (18, 28))
_register("ReduceLogSumExp", _log_sum_exp, (1, 11, 13), (18, 28))
_register("ReduceSumSquare", _sum_square, (1, 11, 13), (18,))


def _arg_extreme(ctx: NodeContext, xp: Any, largest: bool):
    axis = ctx.attr("axis", 0)
    keepdims = bool(ctx.attr("keepdims", 1))
    last = bool(ctx.attr("select_last_index", 0))
    pick = xp.argmax if largest else xp.argmin

    def run(x):
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        if last:
            index = x.shape[axis] - 1 - pick(xp.flip(x, axis), axis=axis, keepdims=keepdims)
        else:
            index = pick(x, axis=axis, keepdims=keepdims)
        return xp.asarray(index).astype(np.int64, copy=False)

    return run


@op("ArgMax", 1, 11, 12, 13)
def arg_max(ctx: NodeContext, xp: Any):
    """Index of the largest element along ``axis`` (first or last occurrence)."""
    return _arg_extreme(ctx, xp, largest=True)


@op("ArgMin", 1, 11, 12, 13)
def arg_min(ctx: NodeContext, xp: Any):
    """Index of the smallest element along ``axis`` (first or last occurrence)."""
    return _arg_extreme(ctx, xp, largest=False)
