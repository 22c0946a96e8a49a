"""Element-wise functions in few passes, written in place on a buffer the caller owns.

Each ``*_inplace(xp, y, ...)`` overwrites ``y`` (a float array no one else reads) and returns it;
array math goes through ``xp`` so the CUDA provider can reuse them with CuPy. No ``**``: a power
is a loop over elements in NumPy, a product of arrays is one vectorised pass.

``erf_float32`` replaces SciPy's erf for float32: erf(x) = tanh(x·P(x²)) on x clipped to
[-4, 4], where P is a degree-6 polynomial fitted (weighted least squares on atanh(erf)) so that
the absolute error against double-precision erf is at most 1.6e-7 and the relative error at
most 7.6e-7 over all floats (tests/test_cpu_fast_kernels.py checks it on a dense range). tanh
and products are vectorised SIMD loops in NumPy, so this takes a fraction of SciPy's time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxmux.providers.cpu import sharded

#: P's coefficients, constant term first: erf(x) ≈ tanh(x · Σ c_k x^(2k)) for |x| ≤ 4.
_ERF_COEFFICIENTS = (
    1.1283798217773438,
    0.10276471823453903,
    -0.00018254731548950076,
    -0.0006273897597566247,
    9.0370602265466e-05,
    -6.097827736084582e-06,
    1.656457015997148e-07,
)
#: Beyond this |x|, erf(x) rounds to ±1 in float32.
_ERF_BOUND = 4.0
_ROOT_HALF = math.sqrt(0.5)
_TANH_GELU_SCALE = math.sqrt(2 / math.pi)


def erf_inplace(xp: Any, y: Any) -> Any:
    """erf of float32 ``y``, written into ``y`` (see the module docstring for the accuracy)."""
    xp.clip(y, -_ERF_BOUND, _ERF_BOUND, out=y)
    square = xp.multiply(y, y)
    poly = xp.multiply(square, np.float32(_ERF_COEFFICIENTS[-1]))
    for c in _ERF_COEFFICIENTS[-2:0:-1]:
        poly += np.float32(c)
        poly *= square
    poly += np.float32(_ERF_COEFFICIENTS[0])
    y *= poly
    return xp.tanh(y, out=y)


def erf_float32(xp: Any, x: Any) -> Any:
    """erf of a float32 array, as a new array."""
    return erf_inplace(xp, x.astype(np.float32, copy=True))


def sigmoid_inplace(xp: Any, y: Any) -> Any:
    """1 / (1 + exp(-y)) in four passes; exp's overflow to inf gives the right limit, 0."""
    with np.errstate(over="ignore"):
        xp.negative(y, out=y)
        xp.exp(y, out=y)
    y += 1
    return xp.reciprocal(y, out=y)


def swish_inplace(xp: Any, y: Any, alpha: float = 1.0) -> Any:
    """y / (1 + exp(-alpha·y)) (SiLU for alpha = 1) in four passes with one temporary; exp's
    overflow to inf gives the right limit, -0."""
    gate = xp.multiply(y, y.dtype.type(-alpha)) if alpha != 1 else xp.negative(y)
    with np.errstate(over="ignore"):
        xp.exp(gate, out=gate)
    gate += 1
    y /= gate
    return y


def hard_swish_inplace(xp: Any, y: Any) -> Any:
    """y · clip(y/6 + 1/2, 0, 1), with one temporary."""
    gate = xp.multiply(y, y.dtype.type(1 / 6))
    gate += y.dtype.type(0.5)
    xp.clip(gate, 0, 1, out=gate)
    y *= gate
    return y


def gelu(xp: Any, x: Any, approximate: str) -> Any:
    """x·Φ(x) as a new array in at least float32: ``"none"`` with erf, ``"tanh"`` by its approximation.

    Float32 runs in chunks of ``GELU_CHUNK`` elements, so that the dozen passes over each chunk
    and its temporary stay in cache; the result is written into the output buffer directly.
    Large arrays are shared between the session's threads in whole chunks (``sharded.chunks``).
    """
    work = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    if work != np.float32:
        return _gelu_into(xp, x, xp.empty(x.shape, work), approximate)
    x = xp.ascontiguousarray(x, dtype=work)
    out = xp.empty(x.shape, work)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)

    def piece(start: int, end: int) -> None:
        _gelu_into(xp, flat_x[start:end], flat_out[start:end], approximate)

    sharded.pieces(xp, flat_x.size, GELU_CHUNK, piece, GELU_CHUNK)
    return out


def gelu_inplace(xp: Any, x: Any, approximate: str, bias: Any = None) -> Any:
    """``gelu`` written over ``x`` (a C-contiguous float32 or float64 array), chunk by chunk: each
    chunk's gate computed in a small buffer, then multiplied in; the same values as ``gelu``.

    With ``bias`` (a vector of x's last dimension, of x's dtype) it is gelu(x + bias): the chunks
    are then whole rows, each row block gets the bias added while it is in cache, so a biased
    product's output needs no separate pass for its bias.
    """
    half = x.dtype.type(0.5)
    width = 1 if bias is None else bias.size
    rows = x.reshape(-1, width)
    step = max(1, GELU_CHUNK // width) * width  # elements per chunk: whole rows

    def piece(start: int, end: int) -> None:  # element offsets of whole rows
        block = rows[start // width : end // width]
        if bias is not None:
            block += bias
        chunk = block.reshape(-1)
        chunk *= _gelu_gate(xp, chunk, xp.empty(chunk.size, x.dtype), approximate)
        chunk *= half

    sharded.pieces(xp, rows.size, step, piece, step)
    return x


#: Elements per chunk of a float32 Gelu: its three buffers take 768 KB, within a 1 MB L2 cache; fewer
#: chunks than at 32K elements cut the per-call cost of its dozen ufunc passes (about 10% on BERT's
#: Gelu), and on several threads each ufunc call is long enough for the others to get the GIL.
GELU_CHUNK = 1 << 16
#: Gelu's erf(x/√2) as tanh(x · P'(x²)): P's coefficients with the 1/√2 folded in, so x need not be scaled.
_GELU_ERF_COEFFICIENTS = tuple(c * _ROOT_HALF * 0.5**k for k, c in enumerate(_ERF_COEFFICIENTS))


def _gelu_into(xp: Any, x: Any, out: Any, approximate: str) -> Any:
    """x·Φ(x) written into ``out`` (a float buffer of x's shape, at least float32)."""
    _gelu_gate(xp, x, out, approximate)
    out *= x
    out *= out.dtype.type(0.5)
    return out


def _gelu_gate(xp: Any, x: Any, out: Any, approximate: str) -> Any:
    """2·Φ(x), that is 1 + erf(x/√2) or its tanh approximation, written into ``out`` (as ``_gelu_into``)."""
    work = out.dtype.type
    if approximate == "none" and out.dtype == np.float32:
        # No clipping as erf needs: P' is positive everywhere and x·P'(x²) >= 9.8 from the end of
        # the fitted range (|x| = 4√2) on, where tanh is 1 in float32, so the tail comes out exact.
        # The polynomial is evaluated in ``out`` itself: passes in place, one temporary (5-10% faster).
        square = xp.multiply(x, x, dtype=work)
        xp.multiply(square, work(_GELU_ERF_COEFFICIENTS[-1]), out=out)
        for c in _GELU_ERF_COEFFICIENTS[-2:0:-1]:
            out += work(c)
            out *= square
        out += work(_GELU_ERF_COEFFICIENTS[0])
        out *= x
        xp.tanh(out, out=out)
    elif approximate == "none":
        xp.multiply(x, work(_ROOT_HALF), out=out)
        out[...] = erf_exact(xp, out)
    else:
        xp.multiply(x, x, out=out)
        out *= x
        out *= work(0.044715)
        out += x
        out *= work(_TANH_GELU_SCALE)
        xp.tanh(out, out=out)
    out += 1
    return out


def erf_exact(xp: Any, x: Any) -> Any:
    """erf of any other dtype to full precision, from SciPy (CuPy's for CuPy arrays); SciPy is
    imported on first use, as it costs more to import than the rest of the provider."""
    if isinstance(x, (np.ndarray, np.generic)):
        import scipy.special

        return scipy.special.erf(x)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)
