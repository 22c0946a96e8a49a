"""Boolean logic, comparisons and selection: And, Or, Xor, Not, Equal, Greater, GreaterOrEqual,
Less, LessOrEqual and Where."""

from __future__ import annotations

from typing import Any, Callable

from onnxmux.providers.cpu.ops.binary_math import Binary, register_broadcasting
from onnxmux.providers.cpu.registry import op


register_broadcasting("And", "logical_and", "Logical A and B.")
register_broadcasting("Or", "logical_or", "Logical A or B.")
register_broadcasting("Xor", "logical_xor", "Logical A xor B.")
register_broadcasting("Equal", "equal", "A == B (numbers, booleans or strings).")
register_broadcasting("Greater", "greater", "A > B.")
register_broadcasting("Less", "less", "A < B.")


@op("Not", 1)
def not_(ctx: Any, xp: Any) -> Callable[[Any], Any]:
    """Logical not X."""
    return xp.logical_not


@op("GreaterOrEqual", 12)
def greater_or_equal(ctx: Any, xp: Any) -> Binary:
    """A >= B."""
    return xp.greater_equal


@op("LessOrEqual", 12)
def less_or_equal(ctx: Any, xp: Any) -> Binary:
    """A <= B."""
    return xp.less_equal


@op("Where", 9)
def where(ctx: Any, xp: Any) -> Callable[[Any, Any, Any], Any]:
    """X where the condition holds, else Y, broadcasting all three."""
    return xp.where
