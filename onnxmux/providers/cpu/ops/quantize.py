"""Linear quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

Scales and zero points apply per tensor, per axis or per block. Integer targets round half
to even and saturate to the type's range; float targets (float8/6/4) go through ml_dtypes,
saturating to the largest finite value unless ``saturate=0``.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_dtypes
import numpy as np

from onnxmux.core.types import numpy_dtype
from onnxmux.providers.cpu.registry import op

#: Float types with no infinity or NaN encoding: they always saturate.
_NO_SPECIALS = {
    np.dtype(ml_dtypes.float4_e2m1fn),
    np.dtype(ml_dtypes.float6_e2m3fn),
    np.dtype(ml_dtypes.float6_e3m2fn),
}
_SUB_BYTE_INTS = {
    np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2)
}
Kernel = Callable[..., Any]

_FLOAT_COMPUTE = {np.dtype(t) for t in (np.float16, np.float32, np.float64, ml_dtypes.bfloat16)}


def _is_integer(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is an integer type, sub-byte ml_dtypes ones included."""
    return dtype.kind in "iu" or dtype in _SUB_BYTE_INTS


def _parse_dtype(ctx: Any, name: str) -> np.dtype | None:
    """The numpy dtype named by an optional TensorProto data type attribute."""
    code = ctx.attr(name, 0)
    if not code:
        return None
    try:
        return np.dtype(numpy_dtype(code))
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ctx.error(f"unsupported {name} {code}") from exc


def _parse_granularity(ctx: Any) -> tuple[int, int]:
    """The (axis, block_size) attributes, validated."""
    block_size = ctx.attr("block_size", 0)
    if block_size < 0:
        raise ctx.error(f"block_size must be non-negative, got {block_size}")
    return ctx.attr("axis", 1), block_size


def _expand(xp: Any, param: Any, shape: tuple[int, ...], axis: int, block_size: int) -> Any:
    """A scale or zero point laid out to broadcast against a tensor of ``shape``."""
    if param.size == 1:
        return param.reshape(())
    axis = axis % len(shape)
    if block_size:
        repeated = xp.repeat(param, block_size, axis=axis)
        return xp.take(repeated, xp.arange(shape[axis]), axis=axis)
    view = [1] * len(shape)
    view[axis] = -1
    return param.reshape(view)


def widen_quantized(x: Any) -> Any:
    """Quantized values in a type where subtracting a zero point is exact (int64 or float32)."""
    return x.astype(np.int64) if _is_integer(x.dtype) else x.astype(np.float32)


def requantize(
    xp: Any, value: Any, zero_point: Any, target: np.dtype, saturate: bool = True
) -> Any:
    """saturate(round(value) + zero_point) in ``target``; ``zero_point`` broadcasts or is None.

    Integer targets round half to even and clamp to their range; float targets clamp to the
    largest finite value when saturating (always for float4/float6).
    """
    integer = _is_integer(target)
    wide = np.float64 if integer else np.float32
    value = (xp.rint(value) if integer else value).astype(wide)
    if zero_point is not None:
        value = value + zero_point.astype(wide)
    if integer:
        info = ml_dtypes.iinfo(target)
        return xp.clip(value, info.min, info.max).astype(target)
    if saturate or target in _NO_SPECIALS:
        limit = float(ml_dtypes.finfo(target).max)
        value = xp.clip(value, -limit, limit)
    return value.astype(target)


def _quantize(
    xp: Any,
    x: Any,
    scale: Any,
    zero_point: Any,
    target: np.dtype,
    compute: np.dtype | None,
    saturate: bool,
    axis: int,
    block_size: int,
) -> Any:
    """saturate(round(x / scale) + zero_point) with the division done in ``compute``."""
    precision = compute or scale.dtype
    if precision not in _FLOAT_COMPUTE:
        precision = np.dtype(np.float32)
    scale = _expand(xp, scale, x.shape, axis, block_size).astype(precision)
    if zero_point is not None:
        zero_point = _expand(xp, zero_point, x.shape, axis, block_size)
    return requantize(xp, x.astype(precision) / scale, zero_point, target, saturate)


@op("QuantizeLinear", 10, 13, 19, 21, 23, 25, 28)
def quantize_linear(ctx: Any, xp: Any) -> Kernel:
    """y = saturate(round(x / y_scale) + y_zero_point), per tensor, per axis or per block."""
    axis, block_size = _parse_granularity(ctx)
    saturate = bool(ctx.attr("saturate", 1))
    compute = _parse_dtype(ctx, "precision")
    target = _parse_dtype(ctx, "output_dtype")
    if target is None and (ctx.num_inputs < 3 or ctx.inputs[2] is None):
        target = np.dtype(np.uint8)

    def run(x, y_scale, y_zero_point=None):
        out = target or y_zero_point.dtype
        return _quantize(xp, x, y_scale, y_zero_point, out, compute, saturate, axis, block_size)

    return run


@op("DequantizeLinear", 10, 13, 19, 21, 23, 25, 28)
def dequantize_linear(ctx: Any, xp: Any) -> Kernel:
    """y = (x - x_zero_point) * x_scale, per tensor, per axis or per block."""
    axis, block_size = _parse_granularity(ctx)
    target = _parse_dtype(ctx, "output_dtype")

    def run(x, x_scale, x_zero_point=None):
        out = target or x_scale.dtype
        value = widen_quantized(x)
        if x_zero_point is not None:
            value = value - _expand(xp, widen_quantized(x_zero_point), x.shape, axis, block_size)
        scale = _expand(xp, x_scale, x.shape, axis, block_size).astype(np.float32)
        return (value.astype(np.float32) * scale).astype(out)

    return run


@op("DynamicQuantizeLinear", 11)
def dynamic_quantize_linear(ctx: Any, xp: Any) -> Kernel:
    """Quantizes float x to uint8 with a scale and zero point derived from its range (0 included)."""
    uint8 = np.dtype(np.uint8)

    def run(x):
        low = xp.min(x, initial=0.0).astype(np.float32)
        high = xp.max(x, initial=0.0).astype(np.float32)
        scale = ((high - low) / np.float32(255)).astype(np.float32)
        divisor = scale if scale != 0 else np.float32(1)  # an all-zero x quantizes to zeros
        zero_point = xp.rint(xp.clip(-low / divisor, 0, 255)).astype(uint8)
        y = _quantize(xp, x, divisor, zero_point, uint8, None, True, 0, 0)
        return y, xp.asarray(scale), xp.asarray(zero_point)

    return run
