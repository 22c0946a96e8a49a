"""Bitwise operators on integers: BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot, BitShift."""

from __future__ import annotations

from typing import Any, Callable

from onnxmux.providers.cpu.registry import op


@op("BitwiseAnd", 18)
def bitwise_and(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """A & B."""
    return xp.bitwise_and


@op("BitwiseOr", 18)
def bitwise_or(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """A | B."""
    return xp.bitwise_or


@op("BitwiseXor", 18)
def bitwise_xor(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """A ^ B."""
    return xp.bitwise_xor


@op("BitwiseNot", 18)
def bitwise_not(ctx: Any, xp: Any) -> Callable[[Any], Any]:
    """~X."""
    return xp.invert


@op("BitShift", 11, 28)
def bit_shift(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """X shifted LEFT or RIGHT by Y bits; right shifts of signed types are arithmetic.

    A shift that is negative or not below the bit width leaves only the sign fill: -1 for a
    right shift of a negative X, else 0 (opset 28 defines this; opset 11 left it open).
    """
    direction = ctx.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.error(f"direction must be LEFT or RIGHT, got {direction!r}")
    left = direction == "LEFT"

    def run(x: Any, y: Any) -> Any:
        bits = x.dtype.itemsize * 8
        valid = (y >= 0) & (y < bits)
        amount = xp.where(valid, y, 0).astype(x.dtype, copy=False)
        if left:
            return xp.where(valid, xp.left_shift(x, amount), 0).astype(x.dtype, copy=False)
        fill = xp.right_shift(x, bits - 1) if x.dtype.kind == "i" else 0
        return xp.where(valid, xp.right_shift(x, amount), fill).astype(x.dtype, copy=False)

    return run
