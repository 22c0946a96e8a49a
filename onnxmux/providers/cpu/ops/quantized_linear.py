"""Quantized matrix products and convolutions: QLinearMatMul, QLinearConv, MatMulInteger, ConvInteger.

Zero points are subtracted in int64 (float32 for float8 inputs), products accumulate
exactly, and integer results wrap to int32 as the specs allow.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxmux.providers.cpu.ops.quantize import requantize, widen_quantized
from onnxmux.providers.cpu.registry import op

Kernel = Callable[..., Any]

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _per_row(param: Any) -> Any:
    """A per-tensor or per-row parameter of the left matrix, laid out to broadcast on it."""
    if param.size == 1:
        return param.reshape(())
    return param.reshape(-1, 1) if param.ndim == 1 else param


def _per_column(param: Any) -> Any:
    """A per-tensor or per-column parameter of the right matrix (trailing axes broadcast as is)."""
    return param.reshape(()) if param.size == 1 else param


def _centered(x: Any, zero_point: Any, layout: Callable[[Any], Any]) -> Any:
    """``x - zero_point`` in a wide type, the zero point arranged by ``layout``."""
    value = widen_quantized(x)
    return value if zero_point is None else value - layout(widen_quantized(zero_point))


@dataclass(frozen=True)
class _ConvGeometry:
    """Parsed Conv attributes: groups, strides, dilations, explicit pads and auto_pad."""

    group: int
    strides: tuple[int, ...] | None
    dilations: tuple[int, ...] | None
    pads: tuple[int, ...] | None
    auto_pad: str

    def padding(self, spatial: tuple[int, ...], kernel: tuple[int, ...]) -> list[tuple[int, int]]:
        """(begin, end) padding per spatial axis."""
        rank = len(kernel)
        if self.auto_pad == "VALID":
            return [(0, 0)] * rank
        if self.auto_pad == "NOTSET":
            pads = self.pads or (0,) * (2 * rank)
            return list(zip(pads[:rank], pads[rank:]))
        result = []
        for size, k, stride, dilation in zip(spatial, kernel, self.stride(rank), self.dilation(rank)):
            total = max(0, (-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size)
            small = total // 2
            result.append((small, total - small) if self.auto_pad == "SAME_UPPER" else (total - small, small))
        return result

    def stride(self, rank: int) -> tuple[int, ...]:
        """Strides, defaulting to 1."""
        return self.strides or (1,) * rank

    def dilation(self, rank: int) -> tuple[int, ...]:
        """Dilations, defaulting to 1."""
        return self.dilations or (1,) * rank


def _parse_conv(ctx: Any) -> _ConvGeometry:
    """Conv attributes, validated."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in _AUTO_PADS:
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    group = ctx.attr("group", 1)
    if group < 1:
        raise ctx.error(f"group must be positive, got {group}")
    geometry = _ConvGeometry(
        group,
        _positive_ints(ctx, "strides"),
        _positive_ints(ctx, "dilations"),
        _optional_ints(ctx, "pads"),
        auto_pad,
    )
    if geometry.pads is not None and (len(geometry.pads) % 2 or min(geometry.pads, default=0) < 0):
        raise ctx.error(f"invalid pads {list(geometry.pads)}")
    return geometry


def _optional_ints(ctx: Any, name: str) -> tuple[int, ...] | None:
    """An INTS attribute as a tuple, None when absent."""
    value = ctx.attr(name, None)
    return None if value is None else tuple(value)


def _positive_ints(ctx: Any, name: str) -> tuple[int, ...] | None:
    """An optional INTS attribute whose values must all be positive."""
    value = _optional_ints(ctx, name)
    if value is not None and min(value, default=1) < 1:
        raise ctx.error(f"{name} must be positive, got {list(value)}")
    return value


def _conv(xp: Any, x: Any, w: Any, geometry: _ConvGeometry) -> Any:
    """N-D grouped convolution of already centered inputs via im2col and a batched matmul."""
    batch, channels = x.shape[:2]
    out_channels = w.shape[0]
    kernel = tuple(w.shape[2:])
    rank = len(kernel)
    strides, dilations = geometry.stride(rank), geometry.dilation(rank)
    padded = xp.pad(x, [(0, 0), (0, 0)] + geometry.padding(tuple(x.shape[2:]), kernel))
    out_shape = tuple(
        (padded.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1
        for i in range(rank)
    )
    columns = xp.stack(
        [
            padded[
                (slice(None), slice(None))
                + tuple(
                    slice(o * d, o * d + s * (n - 1) + 1, s)
                    for o, d, s, n in zip(offset, dilations, strides, out_shape)
                )
            ]
            for offset in itertools.product(*(range(k) for k in kernel))
        ],
        axis=2,
    )
    group = geometry.group
    depth = channels // group * math.prod(kernel)
    columns = columns.reshape(batch, group, depth, math.prod(out_shape))
    weights = w.reshape(group, out_channels // group, depth)
    return xp.matmul(weights, columns).reshape((batch, out_channels) + out_shape)


def _channel_param(param: Any, rank: int, axis: int) -> Any:
    """A per-tensor or per-output-channel parameter laid out along ``axis`` of a rank-``rank`` tensor."""
    if param.size == 1:
        return param.reshape(())
    return param.reshape((1,) * axis + (-1,) + (1,) * (rank - axis - 1))


@op("MatMulInteger", 10)
def matmul_integer(ctx: Any, xp: Any) -> Kernel:
    """int32 matmul of (A - a_zero_point) and (B - b_zero_point)."""

    def run(a, b, a_zero_point=None, b_zero_point=None):
        product = xp.matmul(_centered(a, a_zero_point, _per_row), _centered(b, b_zero_point, _per_column))
        return product.astype(np.int32)

    return run


@op("QLinearMatMul", 10, 21)
def qlinear_matmul(ctx: Any, xp: Any) -> Kernel:
    """Quantized matmul: requantizes (a - a_zp) @ (b - b_zp) * a_scale * b_scale / y_scale."""

    def run(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
        product = xp.matmul(_centered(a, a_zero_point, _per_row), _centered(b, b_zero_point, _per_column))
        factor = _per_row(a_scale).astype(np.float64) * _per_column(b_scale).astype(np.float64)
        scaled = product * (factor / y_scale.astype(np.float64).reshape(()))
        return requantize(xp, scaled, y_zero_point.reshape(()), y_zero_point.dtype)

    return run


@op("ConvInteger", 10)
def conv_integer(ctx: Any, xp: Any) -> Kernel:
    """int32 convolution of (x - x_zero_point) with (w - w_zero_point)."""
    geometry = _parse_conv(ctx)

    def run(x, w, x_zero_point=None, w_zero_point=None):
        centered_w = _centered(w, w_zero_point, lambda zp: _channel_param(zp, w.ndim, 0))
        return _conv(xp, _centered(x, x_zero_point, _per_column), centered_w, geometry).astype(np.int32)

    return run


@op("QLinearConv", 10)
def qlinear_conv(ctx: Any, xp: Any) -> Kernel:
    """Quantized convolution: requantizes conv(x - x_zp, w - w_zp) + B by x_scale * w_scale / y_scale."""
    geometry = _parse_conv(ctx)

    def run(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias=None):
        centered_w = _centered(w, w_zero_point, lambda zp: _channel_param(zp, w.ndim, 0))
        acc = _conv(xp, _centered(x, x_zero_point, _per_column), centered_w, geometry)
        if bias is not None:
            acc = acc + _channel_param(bias.astype(np.int64), acc.ndim, 1)
        w_factor = _channel_param(w_scale.astype(np.float64), acc.ndim, 1)
        factor = x_scale.astype(np.float64).reshape(()) * w_factor / y_scale.astype(np.float64).reshape(())
        scaled = acc * factor
        return requantize(xp, scaled, y_zero_point.reshape(()), y_zero_point.dtype)

    return run
