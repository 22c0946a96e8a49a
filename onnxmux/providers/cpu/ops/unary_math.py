"""Element-wise unary math: Abs, Neg, Sign, Reciprocal, Sqrt, Exp, Log, Ceil, Floor, Round, Erf,
the trigonometric and hyperbolic functions and their inverses, IsNaN and IsInf."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.donation import donating, full_float, ufunc_into
from onnxmux.providers.cpu.ops.pointwise import erf_exact, erf_float32, erf_inplace
from onnxmux.providers.cpu.registry import op


def in_float32(fn: Callable[[Any], Any], into: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """Wrap ``fn(x)`` so that float16, bfloat16 and float8 inputs are computed in float32.

    A float32 result is rounded back to the input's type once, at the end; other results
    (booleans, for instance) are returned as they are. The wrapper takes a donated float32 or
    float64 input (``donation.py``) when ``into(x)`` computes ``fn(x)`` over ``x``, or ``fn`` is a
    ufunc keeping the input's dtype.
    """

    def run(x: Any) -> Any:
        if x.dtype != np.float16 and x.dtype.kind != "V":
            return fn(x)
        y = fn(x.astype(np.float32))
        return y.astype(x.dtype) if y.dtype == np.float32 else y

    if into is not None:
        return donating(run, into, full_float)
    if isinstance(fn, np.ufunc):
        write = ufunc_into(fn, 0)
        return donating(run, write, lambda x: x.dtype.kind != "V" and x.dtype != np.float16)
    return run


def erf(xp: Any, x: Any) -> Any:
    """The Gauss error function: float32 by a fast approximation (max error 1.6e-7), others exactly."""
    return erf_float32(xp, x) if x.dtype == np.float32 else erf_exact(xp, x)


def _erf_into(xp: Any, x: Any) -> Any:
    """erf over ``x`` (float32 by the approximation, float64 exactly)."""
    if x.dtype == np.float32:
        return erf_inplace(xp, x)
    x[...] = erf_exact(xp, x)
    return x


def _unary(
    op_type: str, since: int, doc: str, make: Callable[[Any], Callable], into: Callable[[Any], Callable] | None = None
) -> None:
    """Register a kernel applying ``make(xp)`` element-wise (low-precision floats in float32);
    ``into(xp)``, when given, computes it over a donated input (``in_float32``)."""

    def factory(ctx: Any, xp: Any) -> Callable:
        return in_float32(make(xp), None if into is None else into(xp))

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
_unary("Erf", 9, "Gauss error function.", lambda xp: lambda x: erf(xp, x), lambda xp: lambda x: _erf_into(xp, x))


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
