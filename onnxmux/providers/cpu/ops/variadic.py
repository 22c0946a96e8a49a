"""Element-wise reductions over any number of broadcast inputs: Sum, Mean, Max, Min."""

from __future__ import annotations

import functools
from typing import Any, Callable

from onnxmux.providers.cpu.registry import op


def _fold(ctx: Any, fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``fn`` applied pairwise across all inputs, left to right; before opset 8 the inputs must
    share one shape (these operators broadcast from opset 8 on)."""
    same_shape = ctx.opset < 8

    def run(*inputs: Any) -> Any:
        if same_shape and len({x.shape for x in inputs}) > 1:
            raise ValueError(f"before opset 8 the inputs need one shape, got {[x.shape for x in inputs]}")
        return functools.reduce(fn, inputs)

    return run


@op("Sum", 1)
def sum_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise sum of the inputs."""
    return _fold(ctx, xp.add)


@op("Mean", 1)
def mean(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise mean of the inputs, in their type."""
    total = _fold(ctx, xp.add)

    def run(*inputs: Any) -> Any:
        result = total(*inputs)
        return (result / len(inputs)).astype(result.dtype, copy=False)

    return run


@op("Max", 1)
def max_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise maximum of the inputs (NaN wins)."""
    return _fold(ctx, xp.maximum)


@op("Min", 1)
def min_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise minimum of the inputs (NaN wins)."""
    return _fold(ctx, xp.minimum)
