"""Element-wise reductions over any number of broadcast inputs: Sum, Mean, Max, Min."""

from __future__ import annotations

import functools
from typing import Any, Callable

from onnxmux.providers.cpu.registry import op


def _fold(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``fn`` applied pairwise across all inputs, left to right."""

    def run(*inputs: Any) -> Any:
        return functools.reduce(fn, inputs)

    return run


@op("Sum", 1)
def sum_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise sum of the inputs."""
    return _fold(xp.add)


@op("Mean", 1)
def mean(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise mean of the inputs, in their type."""
    total = _fold(xp.add)

    def run(*inputs: Any) -> Any:
        result = total(*inputs)
        return (result / len(inputs)).astype(result.dtype, copy=False)

    return run


@op("Max", 1)
def max_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise maximum of the inputs (NaN wins)."""
    return _fold(xp.maximum)


@op("Min", 1)
def min_(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Element-wise minimum of the inputs (NaN wins)."""
    return _fold(xp.minimum)
