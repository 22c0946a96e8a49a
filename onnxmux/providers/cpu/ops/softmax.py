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


def _register(op_type: str, fn: AlongAxis, doc: str) -> None:
    """Register ``op_type``: over the input coerced to 2-D before opset 13, along one axis from then on."""

    def coerced_2d(ctx: Any, xp: Any) -> Unary:
        return _flattened(ctx, xp, fn)

    def single_axis(ctx: Any, xp: Any) -> Unary:
        return _single_axis(ctx, xp, fn)

    coerced_2d.__doc__ = f"{doc}, over the dimensions from ``axis`` on."
    single_axis.__doc__ = f"{doc}, along ``axis``."
    for factory in (coerced_2d, single_axis):
        factory.__qualname__ = factory.__name__ = f"{op_type.lower()}_{factory.__name__}"
    op(op_type, 1)(coerced_2d)
    op(op_type, 13)(single_axis)


_register("Softmax", _softmax, "exp(x) / sum(exp(x))")
_register("LogSoftmax", _log_softmax, "log(softmax(x))")
_register("Hardmax", _hardmax, "One-hot of the first maximum (1 there, 0 elsewhere)")
