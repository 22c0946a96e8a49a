"""Row-wise normalizations: BatchNormalization (inference), LayerNormalization, Softmax and
LogSoftmax.

BatchNormalization is element-wise with per-channel parameters. The others give one row to
each work-item: LayerNormalization two passes for the mean and the variance (blocked sums),
then a normalizing pass; Softmax a pass for the maximum, one for the sum of exponentials,
then one writing the result.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import (
    FLOATS,
    LOCAL_SIZE,
    all_of,
    broadcast_shape,
    broadcast_strides,
    contiguous_strides,
    floats,
    global_size,
    normalize_axis,
    op,
    same_types,
    single_output,
    source,
)
from onnxmux.providers.opencl.layout import StridedCopy

_BATCH_NORM = """
__kernel void batch_norm(__global T_T* out, __global const T_T* x, __global const T_T* scale,
                         __global const T_T* bias, __global const T_T* mean, __global const T_T* var,
                         const float epsilon, const int channels, const int inner, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int c = (i / inner) % channels;
    const T_CT factor = T_LOAD(scale, c) / sqrt(T_LOAD(var, c) + (T_CT)epsilon);
    const T_CT shift = T_LOAD(bias, c) - T_LOAD(mean, c) * factor;
    T_STORE(out, i, T_LOAD(x, i) * factor + shift);
}
"""

_LAYER_NORM = """
inline T_CT row_sum(__global const T_T* x, const int base, const int length, const T_CT center, const int squares) {
    T_CT s = 0;
    for (int j0 = 0; j0 < length; j0 += 256) {
        const int j1 = min(length, j0 + 256);
        T_CT part = 0;
        for (int j = j0; j < j1; ++j) {
            const T_CT v = T_LOAD(x, base + j) - center;
            part += squares ? v * v : v;
        }
        s += part;
    }
    return s;
}

__kernel void layer_norm(__global T_T* out, __global const T_T* x, __global const T_T* scale,
                         __global const T_T* bias, __global S_T* mean_out, __global S_T* inv_out,
                         const float epsilon, const int length, const int use_bias, const int stats, const int rows) {
    const int r = get_global_id(0);
    if (r >= rows) return;
    const int base = r * length;
    const T_CT mean = row_sum(x, base, length, 0, 0) / (T_CT)length;
    const T_CT var = row_sum(x, base, length, mean, 1) / (T_CT)length;
    const T_CT inv = (T_CT)1 / sqrt(var + (T_CT)epsilon);
    for (int j = 0; j < length; ++j) {
        T_CT v = (T_LOAD(x, base + j) - mean) * inv * T_LOAD(scale, j);
        if (use_bias) v += T_LOAD(bias, j);
        T_STORE(out, base + j, v);
    }
    if (stats) {
        S_STORE(mean_out, r, mean);
        S_STORE(inv_out, r, inv);
    }
}
"""

_SOFTMAX = """
__kernel void softmax(__global T_T* out, __global const T_T* x, const int length, const int inner, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int base = (i / inner) * length * inner + i % inner;
    T_CT peak = -INFINITY;
    for (int j = 0; j < length; ++j) {
        const T_CT v = T_LOAD(x, base + j * inner);
        if (v > peak || isnan(v)) peak = v;
    }
    T_CT total = 0;
    for (int j = 0; j < length; ++j) total += exp(T_LOAD(x, base + j * inner) - peak);
#ifdef LOG
    const T_CT shift = peak + log(total);
    for (int j = 0; j < length; ++j) T_STORE(out, base + j * inner, T_LOAD(x, base + j * inner) - shift);
#else
    for (int j = 0; j < length; ++j) T_STORE(out, base + j * inner, exp(T_LOAD(x, base + j * inner) - peak) / total);
#endif
}
"""


def _inference(ctx: NodeContext) -> str | None:
    if single_output(ctx) or ctx.attr("training_mode", 0):
        return "training-mode BatchNormalization stays on the CPU"
    if ctx.opset < 9 and not ctx.attr("spatial", 1):
        return "per-activation (spatial=0) BatchNormalization stays on the CPU"
    return None


@op("BatchNormalization", 1, supports=all_of(floats, same_types(), _inference))
def batch_normalization(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Inference-mode ``x · scale / sqrt(var + ε) + (bias - mean · scale / sqrt(var + ε))``."""
    epsilon = float(ctx.attr("epsilon", 1e-5))
    kernel = xp.kernel(source({"T": np.dtype(ctx.inputs[0].dtype)}, _BATCH_NORM), "batch_norm")

    def run(x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
        channels = x.shape[1] if x.ndim > 1 else 1
        for p in (scale, bias, mean, var):
            if p.size != channels:
                raise ValueError(f"a parameter of shape {p.shape} for {channels} channels")
        out = xp.empty(x.shape, x.dtype)
        count = out.size
        if count:
            inner = math.prod(x.shape[2:])
            kernel(global_size(count), (LOCAL_SIZE,), out, x, scale, bias, mean, var, epsilon, channels, inner, count)
        return out

    return run


def _stats_types(ctx: NodeContext) -> str | None:
    for i in (1, 2):
        if ctx.has_output(i) and (ctx.outputs[i].dtype is None or np.dtype(ctx.outputs[i].dtype) not in FLOATS):
            return "Mean/InvStdDev outputs of a type the kernel does not write"
    return None


@op("LayerNormalization", 17, supports=all_of(floats, same_types(), _stats_types))
@op("LayerNormalization", 1, domain="com.onnxmux", supports=all_of(floats, same_types(), _stats_types))
def layer_normalization(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Normalize over the dims from ``axis`` on, scale and shift; Mean and InvStdDev if asked."""
    axis = ctx.attr("axis", -1)
    epsilon = float(ctx.attr("epsilon", 1e-5))
    dtype = np.dtype(ctx.inputs[0].dtype)
    stats = ctx.has_output(1) or ctx.has_output(2)
    stats_dtype = next((np.dtype(ctx.outputs[i].dtype) for i in (1, 2) if ctx.has_output(i)), dtype)
    kernel = xp.kernel(source({"T": dtype, "S": stats_dtype}, _LAYER_NORM), "layer_norm")
    expand = StridedCopy(xp, dtype.itemsize)

    def full(param: Any, shape: tuple[int, ...]) -> Any:
        """``param`` broadcast to the normalized shape (a copy only when it is not that shape)."""
        if param.size == math.prod(shape) and broadcast_shape(param.shape, shape) == shape:
            return param
        target = broadcast_shape(param.shape, shape)
        if target != shape:
            raise ValueError(f"a parameter of shape {param.shape} does not broadcast to {shape}")
        out = xp.empty(shape, param.dtype)
        expand(out, param, shape, broadcast_strides(param.shape, shape), contiguous_strides(shape))
        return out

    def run(x: Any, scale: Any, bias: Any = None) -> Any:
        a = normalize_axis(axis, x.ndim)
        normalized = tuple(x.shape[a:])
        rows = math.prod(x.shape[:a])
        length = math.prod(normalized)
        out = xp.empty(x.shape, x.dtype)
        stat_shape = (*x.shape[:a], *(1,) * (x.ndim - a))
        mean = xp.empty(stat_shape, stats_dtype) if stats else out
        inv = xp.empty(stat_shape, stats_dtype) if stats else out
        if rows and length:
            scale = full(scale, normalized)
            bias = None if bias is None else full(bias, normalized)
            kernel(
                global_size(rows), (LOCAL_SIZE,), out, x, scale, bias if bias is not None else scale, mean, inv,
                epsilon, length, int(bias is not None), int(stats), rows,
            )
        return (out, mean, inv) if stats else out

    return run


def _softmax(ctx: NodeContext, xp: Any, log: bool) -> Callable[[Any], Any]:
    along_axis = ctx.opset >= 13
    axis = ctx.attr("axis", -1 if along_axis else 1)
    text = source({"T": np.dtype(ctx.inputs[0].dtype)}, ("#define LOG\n" if log else "") + _SOFTMAX)
    kernel = xp.kernel(text, "softmax")

    def run(x: Any) -> Any:
        out = xp.empty(x.shape, x.dtype)
        if out.size == 0:
            return out
        if x.ndim == 0:
            raise ValueError("softmax of a scalar")
        a = normalize_axis(axis, x.ndim)
        if along_axis:
            length, inner = x.shape[a], math.prod(x.shape[a + 1 :])
        else:
            length, inner = math.prod(x.shape[a:]), 1
        count = out.size // length
        kernel(global_size(count), (LOCAL_SIZE,), out, x, length, inner, count)
        return out

    return run


@op("Softmax", 1, 13, supports=floats)
def softmax(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """exp(x - max) / sum(exp(x - max)) along ``axis`` (opset 13) or over the dims from ``axis`` on."""
    return _softmax(ctx, xp, log=False)


@op("LogSoftmax", 1, 13, supports=floats)
def log_softmax(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """x - max - log(sum(exp(x - max))), over the same elements as Softmax."""
    return _softmax(ctx, xp, log=True)
