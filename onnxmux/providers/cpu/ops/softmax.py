"""Normalisations along an axis: Softmax, LogSoftmax and Hardmax.

Before opset 13 the input is coerced to 2-D at ``axis`` (the operator runs over all trailing
dimensions together); from opset 13 it runs along the single ``axis``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from onnxmux.providers.cpu.ops.unary_math import in_float32
from onnxmux.providers.cpu.registry import op

Unary = Callable[[Any], Any]
AlongAxis = Callable[[Any, Any, int], Any]


def _softmax(xp: Any, x: Any, axis: int) -> Any:
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _log_softmax(xp: Any, x: Any, axis: int) -> Any:
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def _hardmax(xp: Any, x: Any, axis: int) -> Any:
    first_max = xp.argmax(x, axis=axis, keepdims=True)
    positions = xp.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return (positions == first_max).astype(x.dtype)


def _flattened(ctx: Any, xp: Any, fn: AlongAxis) -> Unary:
    """``fn`` over the input coerced to 2-D at ``axis`` (opset < 13, default axis 1)."""
    axis = ctx.attr("axis", 1)

    def run(x: Any) -> Any:
        if not -x.ndim <= axis <= x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        if x.size == 0:
            return x
        split = axis + x.ndim if axis < 0 else axis
        return fn(xp, x.reshape(math.prod(x.shape[:split]), -1), 1).reshape(x.shape)

    return in_float32(run)


def _single_axis(ctx: Any, xp: Any, fn: AlongAxis) -> Unary:
    """``fn`` along one ``axis`` (opset >= 13, default -1)."""
    axis = ctx.attr("axis", -1)

    def run(x: Any) -> Any:
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        return fn(xp, x, axis % x.ndim) if x.size else x

    return in_float32(run)


@op("Softmax", 1)
def softmax_2d(ctx: Any, xp: Any) -> Unary:
    """exp(x) / sum(exp(x)) over the dimensions from ``axis`` on."""
    return _flattened(ctx, xp, _softmax)


@op("Softmax", 13)
def softmax(ctx: Any, xp: Any) -> Unary:
    """exp(x) / sum(exp(x)) along ``axis``."""
    return _single_axis(ctx, xp, _softmax)


@op("LogSoftmax", 1)
def log_softmax_2d(ctx: Any, xp: Any) -> Unary:
    """log(softmax(x)) over the dimensions from ``axis`` on."""
    return _flattened(ctx, xp, _log_softmax)


@op("LogSoftmax", 13)
def log_softmax(ctx: Any, xp: Any) -> Unary:
    """log(softmax(x)) along ``axis``."""
    return _single_axis(ctx, xp, _log_softmax)


@op("Hardmax", 1)
def hardmax_2d(ctx: Any, xp: Any) -> Unary:
    """1 at the first maximum over the dimensions from ``axis`` on, 0 elsewhere."""
    return _flattened(ctx, xp, _hardmax)


@op("Hardmax", 13)
def hardmax(ctx: Any, xp: Any) -> Unary:
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    return _single_axis(ctx, xp, _hardmax)
