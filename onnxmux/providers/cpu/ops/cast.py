"""Type conversions between every ONNX tensor type: Cast, CastLike and BitCast.

Low-precision kinds (bfloat16, float8, float4, float6, int4, uint4, int2, uint2) are ml_dtypes
types, stored one element per byte.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_dtypes
import numpy as np
import onnx_ir as ir

from onnxmux.providers.cpu.registry import op

_FLOAT8 = frozenset(
    np.dtype(t)
    for t in (
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e4m3fnuz,
        ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz,
    )
)
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
_SUB_BYTE_INTEGERS = frozenset(
    np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2)
)
_STRING_KINDS = "OU"
_ROUND_MODES = ("up", "down", "nearest")
_E8M0_MAX_CODE = 254
_E8M0_NAN_CODE = 255
_E8M0_BIAS = 127


def _dtype_attr(ctx: Any, value: Any) -> np.dtype:
    """The numpy dtype named by a ``to`` attribute: a TensorProto number, or its name before opset 6."""
    try:
        data_type = ir.DataType[value.upper()] if isinstance(value, str) else ir.DataType(value)
        return np.dtype(data_type.numpy())
    except (KeyError, ValueError, TypeError, NotImplementedError):
        raise ctx.error(f"'to' names no supported tensor type: {value!r}") from None


def _conversion_options(ctx: Any) -> tuple[bool, str]:
    """The ``saturate`` and ``round_mode`` attributes, validated."""
    saturate = ctx.attr("saturate", 1)
    if saturate not in (0, 1):
        raise ctx.error(f"saturate must be 0 or 1, got {saturate}")
    round_mode = ctx.attr("round_mode", "up")
    if round_mode not in _ROUND_MODES:
        raise ctx.error(f"round_mode must be one of {', '.join(_ROUND_MODES)}, got {round_mode!r}")
    return bool(saturate), round_mode


def convert(xp: Any, x: Any, to: np.dtype, saturate: bool = True, round_mode: str = "up") -> Any:
    """``x`` converted to ``to`` with ONNX Cast semantics (``saturate`` and ``round_mode`` apply
    to the float8 targets only)."""
    if x.dtype == to:
        return x
    if to.kind in _STRING_KINDS:
        return _to_strings(x)
    if x.dtype.kind in _STRING_KINDS:
        x = _parse_strings(x, to)
    if to == _E8M0:
        return _to_e8m0(xp, x, saturate, round_mode)
    if x.dtype.kind == "V" and to.kind == "V":
        # ml_dtypes lacks some direct casts between its own types: go through a wide type
        x = x.astype(np.int64 if x.dtype in _SUB_BYTE_INTEGERS else np.float32)
    if saturate and to in _FLOAT8 and x.dtype != bool:
        limit = float(ml_dtypes.finfo(to).max)
        x = xp.clip(x, -limit, limit)
    return x.astype(to)


def _to_strings(x: np.ndarray) -> np.ndarray:
    """Decimal text of each element: integers exactly, booleans as 1/0, floats with 8 significant
    digits (``%.8g``, as onnxruntime writes them) and NaN/INF/-INF for the special values."""
    if x.dtype == bool:
        x = x.astype(np.uint8)
    elif x.dtype.kind == "V":
        x = x.astype(np.int64 if x.dtype in _SUB_BYTE_INTEGERS else np.float32)
    if x.dtype.kind != "f":
        return x.astype(str).astype(object)
    text = np.char.mod("%.8g", x)
    text = np.where(np.isnan(x), "NaN", text)
    text = np.where(np.isinf(x), np.where(x > 0, "INF", "-INF"), text)
    return text.astype(object)


def _parse_strings(x: np.ndarray, to: np.dtype) -> np.ndarray:
    """Numbers parsed from text: exact integers for integer targets where possible, else float64."""
    if to.kind in "iu":
        try:
            return x.astype(np.uint64 if to.kind == "u" else np.int64)
        except (ValueError, OverflowError):
            pass
    return x.astype(np.float64)


def _to_e8m0(xp: Any, x: Any, saturate: bool, round_mode: str) -> Any:
    """Powers of two as FLOAT8E8M0 codes (2**(code - 127)); the sign of the input is ignored.

    ``round_mode`` rounds up, down, or to the nearest power with ties up (linearly). Zero,
    infinity and values rounding out of range clamp to the extreme codes when saturating, else
    become NaN.
    """
    v = xp.abs(x.astype(np.float64))
    mantissa, exponent = xp.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= mantissa < 1
    code = exponent + (_E8M0_BIAS - 1)
    if round_mode == "up":
        # the smallest power is the next one up from any positive value below it
        code = xp.maximum(code + (mantissa > 0.5), 0)
    elif round_mode == "down":
        # the largest power is the next one down from any finite value above it
        code = xp.minimum(code, _E8M0_MAX_CODE)
    else:
        code = code + (mantissa >= 0.75)
    too_small = (code < 0) | (v == 0)
    too_large = (code > _E8M0_MAX_CODE) | xp.isinf(v)
    if saturate:
        code = xp.where(too_small, 0, xp.where(too_large, _E8M0_MAX_CODE, code))
    else:
        code = xp.where(too_small | too_large, _E8M0_NAN_CODE, code)
    code = xp.where(xp.isnan(v), _E8M0_NAN_CODE, code)
    return code.astype(np.uint8).view(_E8M0)


@op("Cast", 1, 6, 19, 24)
def cast(ctx: Any, xp: Any) -> Callable[[Any], Any]:
    """The input converted to the type named by ``to``."""
    to = _dtype_attr(ctx, ctx.attr("to"))
    saturate, round_mode = _conversion_options(ctx)
    return lambda x: convert(xp, x, to, saturate, round_mode)


@op("CastLike", 15, 19, 24)
def cast_like(ctx: Any, xp: Any) -> Callable[[Any, Any], Any]:
    """The input converted to the type of the second input."""
    saturate, round_mode = _conversion_options(ctx)
    return lambda x, like: convert(xp, x, like.dtype, saturate, round_mode)


def _bit_width(dtype: np.dtype) -> int:
    return ir.DataType.from_numpy(dtype).bitwidth


@op("BitCast", 26)
def bit_cast(ctx: Any, xp: Any) -> Callable[[Any], Any]:
    """The input's bits reinterpreted as the same-width type named by ``to``."""
    to = _dtype_attr(ctx, ctx.attr("to"))
    if to.kind in _STRING_KINDS:
        raise ctx.error("BitCast cannot produce strings")
    width = _bit_width(to)
    source = ctx.inputs[0].dtype if ctx.inputs and ctx.inputs[0] is not None else None
    if source is not None and source.kind not in _STRING_KINDS and _bit_width(source) != width:
        raise ctx.error(f"BitCast from {source} ({_bit_width(source)} bits) to {to} ({width} bits)")
    sub_byte_mask = (1 << width) - 1 if width < 8 else None

    def run(x: Any) -> Any:
        if x.dtype.kind in _STRING_KINDS or _bit_width(x.dtype) != width:
            raise ValueError(f"cannot bit-cast {x.dtype} to {to}: the bit widths differ")
        if sub_byte_mask is None:
            return x.view(to)
        # sub-byte types keep their bits in the low end of a byte
        return (x.view(np.uint8) & sub_byte_mask).view(to)

    return run
