"""Element-wise binary arithmetic with NumPy-style broadcasting: Add, Sub, Mul, Div, Pow, Mod."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.donation import ufunc_into
from onnxmux.providers.cpu.registry import op

Binary = Callable[[Any, Any], Any]


def legacy_broadcast(ctx: Any, fn: Binary) -> Binary:
    """``fn`` honouring the ``broadcast``/``axis`` attributes of the opset-1 to 6 binary operators.

    Without ``broadcast=1`` the inputs must have one shape. With it, B is broadcast to A (never
    the other way): with an ``axis``, B's dimensions line up with A's from ``axis`` on; without,
    with A's trailing dimensions.
    """
    if ctx.opset >= 7:
        return fn
    broadcast = ctx.attr("broadcast", 0)
    axis = ctx.attr("axis", None)

    def run(a: Any, b: Any) -> Any:
        if not broadcast:
            if a.shape != b.shape:
                raise ValueError(f"without broadcast=1 the inputs need one shape, got {a.shape} and {b.shape}")
            return fn(a, b)
        if axis is not None:
            start = axis + a.ndim if axis < 0 else axis
            trailing = a.ndim - start - b.ndim
            if start < 0 or trailing < 0:
                raise ValueError(f"cannot broadcast shape {b.shape} into {a.shape} at axis {axis}")
            b = b.reshape(b.shape + (1,) * trailing)
        if np.broadcast_shapes(a.shape, b.shape) != a.shape:
            raise ValueError(f"B of shape {b.shape} does not broadcast to A's shape {a.shape}")
        return fn(a, b)

    return run


def register_broadcasting(op_type: str, function: str, doc: str) -> None:
    """Register ``op_type`` (opsets 1 and 7) as the array module's element-wise ``function``.

    ``function`` names the NumPy (or CuPy) ufunc; ``legacy_broadcast`` adds the opset-1 to 6
    ``broadcast``/``axis`` attributes.
    """

    def factory(ctx: Any, xp: Any) -> Binary:
        return legacy_broadcast(ctx, getattr(xp, function))

    factory.__qualname__ = factory.__name__ = op_type.lower()
    factory.__doc__ = doc
    op(op_type, 1, 7)(factory)


register_broadcasting("Add", "add", "A + B.")
register_broadcasting("Sub", "subtract", "A - B.")
register_broadcasting("Mul", "multiply", "A * B.")


@op("Div", 1, 7)
def div(ctx: Any, xp: Any) -> Binary:
    """A / B; integer division truncates toward zero."""

    def run(a: Any, b: Any) -> Any:
        kind = a.dtype.kind
        if kind == "i":
            # a - fmod(a, b) is an exact multiple of b, so flooring it truncates the quotient
            return (a - xp.fmod(a, b)) // b
        if kind == "u":
            return a // b
        return xp.true_divide(a, b)

    if ctx.opset >= 7:
        run.donate = lambda index: _float_only(run, ufunc_into(xp.true_divide, index))  # type: ignore[attr-defined]
    return legacy_broadcast(ctx, run)


def _float_only(run: Binary, donated: Binary) -> Binary:
    """``donated`` for floating-point operands, ``run`` for others."""
    return lambda a, b: donated(a, b) if a.dtype.kind == "f" else run(a, b)


@op("Pow", 1, 7)
def pow_(ctx: Any, xp: Any) -> Binary:
    """X ** Y, in the base's type whatever the exponent's."""

    def run(x: Any, y: Any) -> Any:
        return xp.power(x, y).astype(x.dtype, copy=False)

    return legacy_broadcast(ctx, run)


def _mod_kernel(ctx: Any, xp: Any, float_floor_allowed: bool) -> Binary:
    fmod = ctx.attr("fmod", 0)
    if fmod not in (0, 1):
        raise ctx.error(f"fmod must be 0 or 1, got {fmod}")
    dtype = ctx.inputs[0].dtype if ctx.inputs and ctx.inputs[0] is not None else None
    if not fmod and not float_floor_allowed and dtype is not None and dtype.kind in "fV":
        raise ctx.error("fmod must be 1 for floating-point inputs before opset 28")
    return xp.fmod if fmod else xp.mod


@op("Mod", 10)
def mod(ctx: Any, xp: Any) -> Binary:
    """Remainder: sign of the divisor (``fmod=0``, integers only) or of the dividend (``fmod=1``)."""
    return _mod_kernel(ctx, xp, float_floor_allowed=False)


@op("Mod", 28)
def mod_28(ctx: Any, xp: Any) -> Binary:
    """Remainder: A - floor(A/B)·B (``fmod=0``, floats too) or A - trunc(A/B)·B (``fmod=1``)."""
    return _mod_kernel(ctx, xp, float_floor_allowed=True)
