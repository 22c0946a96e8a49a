"""Activation functions: Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Sigmoid, HardSigmoid, HardSwish,
Swish, Gelu, Softplus, Softsign, Mish, Tanh, ThresholdedRelu, Shrink and Clip.

Except for the exact ones (Relu, PRelu, Clip), float16 and bfloat16 inputs are computed in
float32 and rounded back once.
"""

from __future__ import annotations

from typing import Any, Callable

from onnxmux.core.donation import donating, fits, owned
from onnxmux.providers.cpu.ops.pointwise import gelu as gelu_values
from onnxmux.providers.cpu.ops.pointwise import gelu_inplace
from onnxmux.providers.cpu.ops.pointwise import hard_swish_inplace, sigmoid_inplace, swish_inplace
from onnxmux.providers.cpu.ops.unary_math import in_float32
from onnxmux.providers.cpu.registry import op

Unary = Callable[[Any], Any]


def _elu_part(xp: Any, x: Any, alpha: float) -> Any:
    """max(x, 0) + alpha·(exp(min(x, 0)) - 1): x for positive x, the ELU curve below."""
    return xp.maximum(x, 0) + alpha * xp.expm1(xp.minimum(x, 0))


@op("Relu", 1)
def relu(ctx: Any, xp: Any) -> Unary:
    """max(x, 0)."""
    return donating(
        lambda x: xp.maximum(x, x.dtype.type(0)), lambda x: xp.maximum(x, x.dtype.type(0), out=x), _any_dtype
    )


def _any_dtype(x: Any) -> bool:
    return True


@op("LeakyRelu", 1)
def leaky_relu(ctx: Any, xp: Any) -> Unary:
    """x for x >= 0, alpha·x below."""
    alpha = ctx.attr("alpha", 0.01)
    return in_float32(lambda x: xp.where(x >= 0, x, alpha * x), lambda x: xp.multiply(x, alpha, out=x, where=x < 0))


@op("PRelu", 1)
def prelu(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """x for x >= 0, slope·x below, the slope broadcast to x; before opset 7 a slope of shape (C,)
    applies per channel (axis 1)."""
    per_channel = ctx.opset < 7

    def run(x: Any, slope: Any) -> Any:
        if per_channel and slope.ndim == 1 and slope.size > 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1]:
            slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
        return xp.where(x < 0, slope * x, x).astype(x.dtype, copy=False)

    return run


@op("Elu", 1)
def elu(ctx: Any, xp: Any) -> Unary:
    """x for x >= 0, alpha·(exp(x) - 1) below."""
    alpha = ctx.attr("alpha", 1.0)
    return in_float32(lambda x: _elu_part(xp, x, alpha))


@op("Selu", 1)
def selu(ctx: Any, xp: Any) -> Unary:
    """gamma·x for x > 0, gamma·alpha·(exp(x) - 1) below."""
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return in_float32(lambda x: gamma * _elu_part(xp, x, alpha))


@op("Celu", 12)
def celu(ctx: Any, xp: Any) -> Unary:
    """max(0, x) + min(0, alpha·(exp(x/alpha) - 1))."""
    alpha = ctx.attr("alpha", 1.0)
    if alpha <= 0:
        raise ctx.error(f"alpha must be positive, got {alpha}")
    return in_float32(lambda x: xp.maximum(x, 0) + alpha * xp.expm1(xp.minimum(x, 0) / alpha))


@op("Sigmoid", 1)
def sigmoid(ctx: Any, xp: Any) -> Unary:
    """1 / (1 + exp(-x))."""
    return in_float32(lambda x: sigmoid_inplace(xp, x.copy()), lambda x: sigmoid_inplace(xp, x))


@op("HardSigmoid", 1)
def hard_sigmoid(ctx: Any, xp: Any) -> Unary:
    """max(0, min(1, alpha·x + beta))."""
    alpha = ctx.attr("alpha", 0.2)
    beta = ctx.attr("beta", 0.5)
    def into(x: Any) -> Any:
        x *= alpha
        x += beta
        return xp.clip(x, 0, 1, out=x)

    return in_float32(lambda x: xp.clip(alpha * x + beta, 0, 1), into)


@op("HardSwish", 14)
def hard_swish(ctx: Any, xp: Any) -> Unary:
    """x · max(0, min(1, x/6 + 1/2))."""
    return in_float32(lambda x: hard_swish_inplace(xp, x.copy()), lambda x: hard_swish_inplace(xp, x))


@op("Swish", 24)
def swish(ctx: Any, xp: Any) -> Unary:
    """x · sigmoid(alpha·x)."""
    alpha = ctx.attr("alpha", 1.0)
    return in_float32(lambda x: swish_inplace(xp, x.copy(), alpha), lambda x: swish_inplace(xp, x, alpha))


@op("Gelu", 20)
def gelu(ctx: Any, xp: Any) -> Unary:
    """x·Φ(x): exactly with erf (``approximate="none"``) or by the tanh approximation."""
    approximate = ctx.attr("approximate", "none")
    if approximate in ("none", "tanh"):
        return in_float32(lambda x: gelu_values(xp, x, approximate), lambda x: gelu_inplace(xp, x, approximate))
    raise ctx.error(f"approximate must be 'none' or 'tanh', got {approximate!r}")


@op("Softplus", 1)
def softplus(ctx: Any, xp: Any) -> Unary:
    """log(1 + exp(x))."""
    return in_float32(lambda x: xp.logaddexp(x, 0), lambda x: xp.logaddexp(x, 0, out=x))


@op("Softsign", 1)
def softsign(ctx: Any, xp: Any) -> Unary:
    """x / (1 + |x|)."""
    return in_float32(lambda x: x / (1 + xp.abs(x)))


@op("Mish", 18)
def mish(ctx: Any, xp: Any) -> Unary:
    """x · tanh(softplus(x))."""
    return in_float32(lambda x: x * xp.tanh(xp.logaddexp(x, 0)))


@op("Tanh", 1)
def tanh(ctx: Any, xp: Any) -> Unary:
    """Hyperbolic tangent."""
    return in_float32(xp.tanh)


@op("ThresholdedRelu", 10)
def thresholded_relu(ctx: Any, xp: Any) -> Unary:
    """x where x > alpha, else 0."""
    alpha = ctx.attr("alpha", 1.0)
    return in_float32(lambda x: xp.where(x > alpha, x, 0).astype(x.dtype, copy=False))


@op("Shrink", 9)
def shrink(ctx: Any, xp: Any) -> Unary:
    """x + bias below -lambd, x - bias above lambd, 0 in between."""
    lambd = ctx.attr("lambd", 0.5)
    bias = ctx.attr("bias", 0.0)

    def run(x: Any) -> Any:
        y = xp.where(x < -lambd, x + bias, xp.where(x > lambd, x - bias, 0))
        return y.astype(x.dtype, copy=False)

    return in_float32(run)


def _clip(xp: Any, x: Any, low: Any = None, high: Any = None, out: Any = None) -> Any:
    """x limited to [low, high] (either bound may be None); high wins where low > high; written
    into ``out`` when given (x itself when neither bound is)."""
    if low is not None:
        x = xp.maximum(x, low, out=out)
    if high is not None:
        x = xp.minimum(x, high, out=out)
    return x


@op("Clip", 1)
def clip_attributes(ctx: Any, xp: Any) -> Unary:
    """x limited to the ``min``/``max`` attributes."""
    low = ctx.attr("min", None)
    high = ctx.attr("max", None)

    def bounds(x: Any) -> list[Any]:
        return [None if b is None else x.dtype.type(b) for b in (low, high)]

    return donating(lambda x: _clip(xp, x, *bounds(x)), lambda x: _clip(xp, x, *bounds(x), out=x), _any_dtype)


@op("Clip", 11)
def clip(ctx: Any, xp: Any) -> Callable[..., Any]:
    """x limited to the optional ``min``/``max`` inputs."""
    def run(x: Any, low: Any = None, high: Any = None) -> Any:
        return _clip(xp, x, low, high)

    run.donate = lambda index: _clip_into(xp, run) if index == 0 else None  # type: ignore[attr-defined]
    return run


def _clip_into(xp: Any, run: Callable[..., Any]) -> Callable[..., Any]:
    """Clip's ``run`` computed over a donated x, when its bounds neither widen x's shape nor change its
    dtype (an unbounded Clip returns x itself: nothing to write)."""

    def variant(x: Any, *bounds: Any) -> Any:
        given = [b for b in bounds if b is not None]
        if not given or not owned(x) or not fits(x, x, *given) or any(b.dtype != x.dtype for b in given):
            return run(x, *bounds)
        return _clip(xp, x, *bounds, out=x)

    return variant
