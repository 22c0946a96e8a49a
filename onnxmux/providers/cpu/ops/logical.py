"""Boolean logic, comparisons and selection: And, Or, Xor, Not, Equal, Greater, GreaterOrEqual,
Less, LessOrEqual and Where."""

from __future__ import annotations

from typing import Any, Callable

from onnxmux.providers.cpu.ops.binary_math import Binary, legacy_broadcast
from onnxmux.providers.cpu.registry import op


@op("And", 1, 7)
def and_(ctx: Any, xp: Any) -> Binary:
    """Logical A and B."""
    return legacy_broadcast(ctx, xp.logical_and)


@op("Or", 1, 7)
def or_(ctx: Any, xp: Any) -> Binary:
    """Logical A or B."""
    return legacy_broadcast(ctx, xp.logical_or)


@op("Xor", 1, 7)
def xor(ctx: Any, xp: Any) -> Binary:
    """Logical A xor B."""
    return legacy_broadcast(ctx, xp.logical_xor)


@op("Not", 1)
def not_(ctx: Any, xp: Any) -> Callable[[Any], Any]:
    """Logical not X."""
    return xp.logical_not


@op("Equal", 1, 7)
def equal(ctx: Any, xp: Any) -> Binary:
    """A == B (numbers, booleans or strings)."""
    return legacy_broadcast(ctx, xp.equal)


@op("Greater", 1, 7)
def greater(ctx: Any, xp: Any) -> Binary:
    """A > B."""
    return legacy_broadcast(ctx, xp.greater)


@op("GreaterOrEqual", 12)
def greater_or_equal(ctx: Any, xp: Any) -> Binary:
    """A >= B."""
    return xp.greater_equal


@op("Less", 1, 7)
def less(ctx: Any, xp: Any) -> Binary:
    """A < B."""
    return legacy_broadcast(ctx, xp.less)


@op("LessOrEqual", 12)
def less_or_equal(ctx: Any, xp: Any) -> Binary:
    """A <= B."""
    return xp.less_equal


@op("Where", 9)
def where(ctx: Any, xp: Any) -> Callable[[Any, Any, Any], Any]:
    """X where the condition holds, else Y, broadcasting all three."""
    return xp.where
