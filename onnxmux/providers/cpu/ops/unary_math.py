"""Element-wise unary math: Abs, Neg, Sign, Reciprocal, Sqrt, Exp, Log, Ceil, Floor, Round, Erf,
the trigonometric and hyperbolic functions and their inverses, IsNaN and IsInf."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numpy.polynomial import chebyshev

from onnxmux.providers.cpu.registry import op


def in_float32(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap ``fn(x)`` so that float16, bfloat16 and float8 inputs are computed in float32.

    A float32 result is rounded back to the input's type once, at the end; other results
    (booleans, for instance) are returned as they are.
    """

    def run(x: Any) -> Any:
        if x.dtype != np.float16 and x.dtype.kind != "V":
            return fn(x)
        y = fn(x.astype(np.float32))
        return y.astype(x.dtype) if y.dtype == np.float32 else y

    return run


class _ErfTable:
    """erf on [0, ``limit``) in float64: a Taylor series below ``split``, above it
    ``1 - exp(-x²)·g(1/x)`` with ``g(u) = erfc(1/u)·exp(1/u²)`` fitted by a Chebyshev series.

    Past ``limit`` erf rounds to 1 in the target precision. The sizes are chosen so that the
    float64 table is within a few ulp and the float32 one rounds correctly almost everywhere.
    """

    def __init__(self, split: float, limit: float, taylor_terms: int, chebyshev_degree: int) -> None:
        self.split = split
        self.limit = limit
        scale = 2 / math.sqrt(math.pi)
        self.taylor = [
            scale * (-1) ** k / (math.factorial(k) * (2 * k + 1)) for k in range(taylor_terms)
        ]
        self.u_lo, self.u_hi = 1 / limit, 1 / split
        self.chebyshev = chebyshev.chebinterpolate(self._g_on_unit, chebyshev_degree).tolist()

    def _g_on_unit(self, s: np.ndarray) -> np.ndarray:
        u = (s * (self.u_hi - self.u_lo) + (self.u_hi + self.u_lo)) / 2
        return np.array([math.erfc(1 / v) * math.exp(1 / (v * v)) for v in u])

    def __call__(self, xp: Any, x: Any) -> Any:
        ax = xp.abs(x.astype(np.float64)).reshape(-1)
        y = xp.minimum(ax, 1.0)  # 1 past the limit, NaN stays NaN
        near = ax < self.split
        y[near] = _horner(xp, ax[near] ** 2, self.taylor) * ax[near]
        far = (ax >= self.split) & (ax < self.limit)
        xf = ax[far]
        s = (2 / xf - (self.u_hi + self.u_lo)) / (self.u_hi - self.u_lo)
        y[far] = 1 - xp.exp(-xf * xf) * _clenshaw(xp, s, self.chebyshev)
        return xp.copysign(y.reshape(x.shape), x).astype(x.dtype)


def _horner(xp: Any, t: Any, coeffs: list[float]) -> Any:
    """sum(coeffs[k] * t**k), evaluated in place."""
    acc = xp.full_like(t, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc *= t
        acc += c
    return acc


def _clenshaw(xp: Any, s: Any, coeffs: list[float]) -> Any:
    """sum(coeffs[k] * T_k(s)) for Chebyshev polynomials T_k, rotating three buffers."""
    b1 = xp.zeros_like(s)
    b2 = xp.zeros_like(s)
    step = xp.empty_like(s)
    s2 = s + s
    for c in coeffs[:0:-1]:
        xp.multiply(s2, b1, out=step)
        step -= b2
        step += c
        b1, b2, step = step, b1, b2
    return s * b1 - b2 + coeffs[0]


_ERF_FLOAT32 = _ErfTable(split=1.5, limit=4.0, taylor_terms=16, chebyshev_degree=12)
_ERF_FLOAT64 = _ErfTable(split=1.5, limit=6.0, taylor_terms=25, chebyshev_degree=20)


def erf(xp: Any, x: Any) -> Any:
    """The Gauss error function of a float array, in its own dtype (float32 tables below float64)."""
    table = _ERF_FLOAT64 if x.dtype == np.float64 else _ERF_FLOAT32
    return table(xp, x)


def _unary(op_type: str, since: int, doc: str, make: Callable[[Any], Callable]) -> None:
    """Register a kernel applying ``make(xp)`` element-wise (low-precision floats in float32)."""

    def factory(ctx: Any, xp: Any) -> Callable:
        return in_float32(make(xp))

    factory.__name__ = op_type.lower()
    factory.__doc__ = doc
    op(op_type, since)(factory)


_ELEMENTWISE: list[tuple[str, int, str, Callable[[Any], Callable]]] = [
    ("Abs", 1, "Absolute value.", lambda xp: xp.abs),
    ("Neg", 1, "Negation.", lambda xp: xp.negative),
    ("Sign", 9, "Sign: -1, 0 or 1 (NaN stays NaN).", lambda xp: xp.sign),
    ("Reciprocal", 1, "1 / x.", lambda xp: xp.reciprocal),
    ("Sqrt", 1, "Square root.", lambda xp: xp.sqrt),
    ("Exp", 1, "Natural exponential.", lambda xp: xp.exp),
    ("Log", 1, "Natural logarithm.", lambda xp: xp.log),
    ("Ceil", 1, "Round up to an integer.", lambda xp: xp.ceil),
    ("Floor", 1, "Round down to an integer.", lambda xp: xp.floor),
    ("Round", 11, "Round to the nearest integer, halves to even.", lambda xp: xp.rint),
    ("Erf", 9, "Gauss error function.", lambda xp: lambda x: erf(xp, x)),
    ("Sin", 7, "Sine.", lambda xp: xp.sin),
    ("Cos", 7, "Cosine.", lambda xp: xp.cos),
    ("Tan", 7, "Tangent.", lambda xp: xp.tan),
    ("Asin", 7, "Arcsine.", lambda xp: xp.arcsin),
    ("Acos", 7, "Arccosine.", lambda xp: xp.arccos),
    ("Atan", 7, "Arctangent.", lambda xp: xp.arctan),
    ("Sinh", 9, "Hyperbolic sine.", lambda xp: xp.sinh),
    ("Cosh", 9, "Hyperbolic cosine.", lambda xp: xp.cosh),
    ("Asinh", 9, "Inverse hyperbolic sine.", lambda xp: xp.arcsinh),
    ("Acosh", 9, "Inverse hyperbolic cosine.", lambda xp: xp.arccosh),
    ("Atanh", 9, "Inverse hyperbolic tangent.", lambda xp: xp.arctanh),
    ("IsNaN", 9, "Whether each element is NaN.", lambda xp: xp.isnan),
]

for _spec in _ELEMENTWISE:
    _unary(*_spec)


@op("IsInf", 10)
def is_inf(ctx: Any, xp: Any) -> Callable:
    """Whether each element is an infinity of a detected sign (``detect_positive``/``detect_negative``)."""
    positive = bool(ctx.attr("detect_positive", 1))
    negative = bool(ctx.attr("detect_negative", 1))
    if positive and negative:
        return in_float32(xp.isinf)
    if positive:
        return in_float32(xp.isposinf)
    if negative:
        return in_float32(xp.isneginf)
    return lambda x: xp.zeros(x.shape, dtype=bool)
