"""Normalization layers: Batch, Instance, Group, Layer, RMS, mean-variance, Lp and LRN."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.donation import broadcasts_within, owned
from onnxmux.providers.cpu.ops.reduce import by_rows, float_dtype, trailing_mean
from onnxmux.providers.cpu.registry import op


def stash_dtype(ctx: NodeContext) -> np.dtype:
    """The dtype named by a ``stash_type`` attribute (default float32)."""
    stash_type = ctx.attr("stash_type", ir.DataType.FLOAT.value)
    try:
        dtype = ir.DataType(stash_type).numpy()
    except (ValueError, TypeError) as exc:
        raise ctx.error(f"unsupported stash_type {stash_type}") from exc
    if np.dtype(dtype).kind != "f" and str(dtype) != "bfloat16":
        raise ctx.error(f"stash_type {stash_type} is not a floating-point type")
    return np.dtype(dtype)


def _per_channel(param: Any, rank: int, dtype: np.dtype) -> Any:
    """A (C,) parameter shaped to broadcast over an (N, C, spatial...) input of ``rank`` axes."""
    if param.ndim == 1:
        param = param.reshape(-1, *(1,) * (rank - 2))
    return param.astype(dtype, copy=False)


def _moments(xp: Any, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """Mean and population variance of ``x`` over ``axes``, kept as size-1 axes."""
    mean = xp.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    return mean, xp.mean(centered * centered, axis=axes, keepdims=True)


def standardize(xp: Any, x: Any, axes: tuple[int, ...], epsilon: float) -> tuple[Any, Any, Any]:
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes``, with the mean and inverse deviation."""
    mean, var = _moments(xp, x, axes)
    inv_std = 1 / xp.sqrt(var + epsilon)
    return (x - mean) * inv_std, mean, inv_std


def rms_standardize(xp: Any, x: Any, axes: tuple[int, ...], epsilon: float) -> tuple[Any, Any]:
    """``x / sqrt(mean(x^2) + epsilon)`` over ``axes``, with that inverse root mean square."""
    axes = tuple(a % x.ndim for a in axes)
    if by_rows(x, axes):
        rows = x.reshape(-1, math.prod(x.shape[axes[0] :]))
        inv_rms = _inverse_root(xp, _row_dots(xp, rows), rows.shape[1], epsilon)
        return (rows * inv_rms).reshape(x.shape), inv_rms.reshape(_kept_shape(x.shape, axes))
    inv_rms = 1 / xp.sqrt(xp.mean(x * x, axis=axes, keepdims=True) + epsilon)
    return x * inv_rms, inv_rms


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced trailing ``axes`` kept as size 1 (keepdims)."""
    return tuple(shape[: axes[0]]) + (1,) * len(axes)


def _row_dots(xp: Any, rows: Any) -> Any:
    """Each row's dot product with itself, as a column: one pass, no squared temporary."""
    return xp.einsum("ij,ij->i", rows, rows).reshape(-1, 1)


def _inverse_root(xp: Any, sums: Any, n: int, epsilon: float) -> Any:
    """``1 / sqrt(sums / n + epsilon)`` in place on the (small) column of sums."""
    sums *= sums.dtype.type(1 / n)
    sums += sums.dtype.type(epsilon)
    xp.sqrt(sums, out=sums)
    return xp.reciprocal(sums, out=sums)


def _centered_rows(
    xp: Any, x: Any, axes: tuple[int, ...], epsilon: float, into: bool = False
) -> tuple[Any, Any, Any]:
    """``(x - mean) / sqrt(var + epsilon)`` over trailing ``axes``, as a (rows, n) buffer (x's own
    when ``into``, else a new one), with the mean and inverse deviation as (rows, 1) columns; the
    row sums are BLAS matrix-vector products."""
    rows = x.reshape(-1, math.prod(x.shape[axes[0] :]))
    n = rows.shape[1]
    mean = trailing_mean(xp, rows, 1)
    centered = xp.subtract(rows, mean, out=rows if into else None)
    inv_std = _inverse_root(xp, _row_dots(xp, centered), n, epsilon)
    centered *= inv_std
    return centered, mean, inv_std


def _batch_norm_affine(
    xp: Any, params: Sequence[Any], rank: int, dtype: np.dtype, epsilon: float
) -> tuple[Any, Any]:
    """The factor and shift that apply inference-mode batch normalization as ``x * f + s``."""
    scale, bias, mean, var = (_per_channel(p, rank, dtype) for p in params)
    factor = scale / xp.sqrt(var + epsilon)
    return factor, bias - mean * factor


def _batch_norm_training(xp: Any, epsilon: float, momentum: float, per_activation: bool):
    """A training-mode kernel: normalize with batch statistics and update the running ones."""

    def run(x, scale, bias, mean, var):
        dtype = float_dtype(x.dtype)
        axes = (0,) if per_activation else (0, *range(2, x.ndim))
        xw = x.astype(dtype, copy=False)
        batch_mean, batch_var = _moments(xp, xw, axes)
        normalized = (xw - batch_mean) / xp.sqrt(batch_var + epsilon)
        y = normalized * _per_channel(scale, x.ndim, dtype) + _per_channel(bias, x.ndim, dtype)
        batch_mean, batch_var = (s.reshape(mean.shape) for s in (batch_mean, batch_var))
        running_mean = mean * momentum + batch_mean * (1 - momentum)
        running_var = var * momentum + batch_var * (1 - momentum)
        return (
            y.astype(x.dtype),
            running_mean.astype(mean.dtype),
            running_var.astype(var.dtype),
            batch_mean.astype(mean.dtype),
            batch_var.astype(var.dtype),
        )

    return run


@op("BatchNormalization", 1, 6, 7, 9, 14, 15)
def batch_normalization(ctx: NodeContext, xp: Any):
    """Per-channel normalization with running (inference) or batch (training) statistics.

    Before opset 14, training mode is implied by asking for the statistics outputs (and not
    setting is_test); its outputs are then Y, running mean/var, batch mean/var.
    """
    epsilon = ctx.attr("epsilon", 1e-5)
    momentum = ctx.attr("momentum", 0.9)
    if ctx.opset >= 14:
        training = bool(ctx.attr("training_mode", 0))
    else:
        training = ctx.num_outputs > 1 and not ctx.attr("is_test", 0)
    if training:
        per_activation = ctx.opset < 9 and not ctx.attr("spatial", 1)
        return _batch_norm_training(xp, epsilon, momentum, per_activation)

    params = [ctx.constant(i) for i in range(1, 5)]
    x_info = ctx.inputs[0]
    if all(p is not None for p in params) and x_info is not None and x_info.shape is not None:
        constants = [xp.asarray(p) for p in params]
        dtype = float_dtype(x_info.dtype)
        factor, shift = _batch_norm_affine(xp, constants, len(x_info.shape), dtype, epsilon)

        def run_constant(x, *_params):
            return (x * factor + shift).astype(x.dtype, copy=False)

        return run_constant

    def run(x, *params):
        factor, shift = _batch_norm_affine(xp, params, x.ndim, float_dtype(x.dtype), epsilon)
        return (x * factor + shift).astype(x.dtype, copy=False)

    return run


@op("InstanceNormalization", 1, 6, 22)
def instance_normalization(ctx: NodeContext, xp: Any):
    """Normalize each (sample, channel) plane over its spatial axes; scale and shift per channel."""
    epsilon = ctx.attr("epsilon", 1e-5)

    def run(x, scale, bias):
        dtype = float_dtype(x.dtype)
        spatial = tuple(range(2, x.ndim))
        normalized, _, _ = standardize(xp, x.astype(dtype, copy=False), spatial, epsilon)
        y = normalized * _per_channel(scale, x.ndim, dtype) + _per_channel(bias, x.ndim, dtype)
        return y.astype(x.dtype)

    return run


def _group_norm(ctx: NodeContext, xp: Any, per_channel: bool):
    """A GroupNormalization kernel; ``per_channel``: scale/bias per channel (21) or group (18)."""
    num_groups = ctx.attr("num_groups")
    epsilon = ctx.attr("epsilon", 1e-5)
    stash = stash_dtype(ctx) if per_channel else None
    if num_groups < 1:
        raise ctx.error(f"'num_groups' must be positive, got {num_groups}")

    def run(x, scale, bias):
        n, c = x.shape[:2]
        if c % num_groups:
            raise ValueError(f"{c} channels do not split into {num_groups} groups")
        dtype = stash if per_channel else float_dtype(x.dtype)
        grouped = x.astype(dtype, copy=False).reshape(n, num_groups, -1)
        normalized, _, _ = standardize(xp, grouped, (2,), epsilon)
        if per_channel:
            normalized = normalized.astype(x.dtype).reshape(x.shape)
            scale, bias = (_per_channel(p, x.ndim, x.dtype) for p in (scale, bias))
            y = normalized * scale + bias
        else:
            y = normalized * scale.astype(dtype).reshape(-1, 1) + bias.astype(dtype).reshape(-1, 1)
        return y.reshape(x.shape).astype(x.dtype, copy=False)

    return run


@op("GroupNormalization", 18)
def group_normalization_18(ctx: NodeContext, xp: Any):
    """Normalize each group of channels per sample; scale and bias are given per group."""
    return _group_norm(ctx, xp, per_channel=False)


@op("GroupNormalization", 21)
def group_normalization(ctx: NodeContext, xp: Any):
    """Normalize each group of channels per sample in stash precision; scale/bias per channel."""
    return _group_norm(ctx, xp, per_channel=True)


def trailing_axes(rank: int, axis: int) -> tuple[int, ...]:
    """The axes from ``axis`` (possibly negative) to the last."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return tuple(range(axis % rank, rank))


@op("LayerNormalization", 17)
def layer_normalization(ctx: NodeContext, xp: Any):
    """Normalize over the axes from ``axis`` on, then scale and shift; also Mean and InvStdDev."""
    axis = ctx.attr("axis", -1)
    epsilon = ctx.attr("epsilon", 1e-5)
    stash = stash_dtype(ctx)

    def normalize(x, scale, bias=None, into=False):
        # into: x is a dying input of the stash dtype, overwritten by the result (donation.py)
        axes = trailing_axes(x.ndim, axis)
        xs = x.astype(stash, copy=False)
        if by_rows(xs, axes):
            y, mean, inv_std = _centered_rows(xp, xs, axes, epsilon, into)
            kept = _kept_shape(x.shape, axes)
            y, mean, inv_std = y.reshape(x.shape), mean.reshape(kept), inv_std.reshape(kept)
        else:
            mean = xp.mean(xs, axis=axes, keepdims=True)
            y = xp.subtract(xs, mean, out=xs if into else None)  # the one full-size buffer, then in place
            inv_std = 1 / xp.sqrt(xp.mean(xp.square(y), axis=axes, keepdims=True) + epsilon)
            y *= inv_std
        y = y.astype(x.dtype, copy=False)
        for param, apply in ((scale, xp.multiply), (bias, xp.add)):
            if param is None:
                continue
            if broadcasts_within(param.shape, y.shape):
                apply(y, param, out=y, casting="unsafe")
            else:
                y = apply(y, param)
        return y.astype(x.dtype, copy=False), mean, inv_std

    def run(x, scale, bias=None):
        return normalize(x, scale, bias)

    def donated(x, scale, bias=None):
        return normalize(x, scale, bias, into=owned(x) and x.dtype == stash)

    run.donate = lambda index: donated if index == 0 else None  # type: ignore[attr-defined]
    return run


@op("RMSNormalization", 23)
def rms_normalization(ctx: NodeContext, xp: Any):
    """Divide by the root mean square over the axes from ``axis`` on, then scale; also that
    inverse root mean square (the second output of onnxruntime's SimplifiedLayerNormalization)."""
    axis = ctx.attr("axis", -1)
    epsilon = ctx.attr("epsilon", 1e-5)
    stash = stash_dtype(ctx)

    def run(x, scale):
        axes = trailing_axes(x.ndim, axis)
        normalized, inv_rms = rms_standardize(xp, x.astype(stash, copy=False), axes, epsilon)
        y = normalized.astype(x.dtype, copy=False)
        if broadcasts_within(scale.shape, y.shape):
            return xp.multiply(y, scale, out=y, casting="unsafe"), inv_rms  # y is rms_standardize's own buffer
        return (y * scale).astype(x.dtype, copy=False), inv_rms

    return run


@op("MeanVarianceNormalization", 9, 13)
def mean_variance_normalization(ctx: NodeContext, xp: Any):
    """``(X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)`` over ``axes``."""
    axes = tuple(ctx.attr("axes", [0, 2, 3]))

    def run(x):
        dtype = float_dtype(x.dtype)
        xw = x.astype(dtype, copy=False)
        mean = xp.mean(xw, axis=axes, keepdims=True)
        variance = xp.mean(xw * xw, axis=axes, keepdims=True) - mean * mean
        return ((xw - mean) / (xp.sqrt(variance) + 1e-9)).astype(x.dtype)

    return run


@op("LpNormalization", 1, 22)
def lp_normalization(ctx: NodeContext, xp: Any):
    """Divide by the L1 or L2 norm along ``axis`` (all-zero slices stay zero)."""
    axis = ctx.attr("axis", -1)
    p = ctx.attr("p", 2)
    if p not in (1, 2):
        raise ctx.error(f"'p' must be 1 or 2, got {p}")

    def run(x):
        dtype = float_dtype(x.dtype)
        xw = x.astype(dtype, copy=False)
        if p == 1:
            norm = xp.sum(xp.abs(xw), axis=axis, keepdims=True)
        else:
            norm = xp.sqrt(xp.sum(xw * xw, axis=axis, keepdims=True))
        # An all-zero slice has norm 0 and stays zero.
        return (xw / xp.where(norm == 0, 1, norm)).astype(x.dtype)

    return run


@op("LRN", 1, 13)
def lrn(ctx: NodeContext, xp: Any):
    """Local response normalization across neighbouring channels."""
    size = ctx.attr("size")
    alpha = ctx.attr("alpha", 1e-4)
    beta = ctx.attr("beta", 0.75)
    bias = ctx.attr("bias", 1.0)
    if size < 1:
        raise ctx.error(f"'size' must be positive, got {size}")
    before, after = (size - 1) // 2, size // 2

    def run(x):
        dtype = float_dtype(x.dtype)
        xw = x.astype(dtype, copy=False)
        widths = [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2)
        squares = xp.pad(xw * xw, widths)
        window_sums = xp.lib.stride_tricks.sliding_window_view(squares, size, axis=1).sum(axis=-1)
        return (xw / (bias + alpha / size * window_sums) ** beta).astype(x.dtype)

    return run
