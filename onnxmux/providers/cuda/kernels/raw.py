"""CUDA source of the hand-written kernels, and their CuPy kernel objects, built once per process.

CuPy compiles a kernel for each device and type signature on its first launch and caches the
binary on disk, so building the Python objects here is cheap; each is made on first use, which
keeps CuPy out of the import of onnxmux.
"""

from __future__ import annotations

import functools
from typing import Any

GELU_EXPR = {
    "none": "0.5f * v * (1.f + erff(v * 0.70710678118654752f))",
    "tanh": "0.5f * v * (1.f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)))",
}

#: Activation name -> C expression of ``v`` (a float) with parameters ``a`` and ``b``, as in
#: the com.onnxmux fused ops (``activation``/``activation_params``).
ACTIVATION_EXPR = {
    "": "v",
    "Relu": "fmaxf(v, 0.f)",
    "LeakyRelu": "(v < 0.f ? v * a : v)",
    "Sigmoid": "1.f / (1.f + expf(-v))",
    "Tanh": "tanhf(v)",
    "Clip": "fminf(fmaxf(v, a), b)",
    "HardSigmoid": "fminf(fmaxf(v * a + b, 0.f), 1.f)",
    "Gelu": GELU_EXPR["none"],
    "FastGelu": GELU_EXPR["tanh"],
}


def _cupy() -> Any:
    import cupy

    return cupy


#: An elementwise kernel's definition: input params, output params, body, name (CuPy's syntax).
ElementwiseSpec = tuple[str, str, str, str]


def epilogue_spec(activation: str, has_bias: bool, has_z: bool) -> ElementwiseSpec:
    """In place on ``y``: ``y = act(alpha * y + beta * bias + z)``, one pass; bias and z broadcast.

    Called as ``kernel([bias,] [z,] alpha, beta, a, b, y)``; serves Gemm+bias+activation and
    Conv+bias+residual+activation.
    """
    inputs = (["T bias"] if has_bias else []) + (["T z"] if has_z else [])
    inputs += ["float32 alpha", "float32 beta", "float32 a", "float32 b"]
    value = "alpha * (float)y" + (" + beta * (float)bias" if has_bias else "") + (" + (float)z" if has_z else "")
    body = f"float v = {value}; y = (T)({ACTIVATION_EXPR[activation]});"
    name = f"onnxmux_epilogue_{activation or 'none'}_{int(has_bias)}{int(has_z)}"
    return ", ".join(inputs), "T y", body, name


def gelu_spec(approximate: str) -> ElementwiseSpec:
    """``y = gelu(x)`` (erf, or tanh approximation) in one pass, computed in float."""
    body = f"float v = (float)x; y = (T)({GELU_EXPR[approximate]});"
    return "T x", "T y", body, f"onnxmux_gelu_{approximate}"


def scale_add_spec() -> ElementwiseSpec:
    """In place on ``s``: ``s = s * scale + mask`` (mask broadcast), attention's pre-softmax step."""
    return "T mask, float32 scale", "T s", "s = (T)((float)s * scale + (float)mask);", "onnxmux_scale_add"


def im2col_spec() -> ElementwiseSpec:
    """Columns (N, C*KH*KW, OH*OW) of a 2-D NCHW image: one element per thread, zero padding."""
    params = "raw T x, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW, " \
        "int32 SH, int32 SW, int32 PH, int32 PW, int32 DH, int32 DW"
    body = """
    long long p = i % ((long long)OH * OW);
    long long r = i / ((long long)OH * OW);
    int kw = r % KW; r /= KW;
    int kh = r % KH; r /= KH;
    int c = r % C;
    long long n = r / C;
    int oh = p / OW, ow = p % OW;
    int h = oh * SH - PH + kh * DH, w = ow * SW - PW + kw * DW;
    col = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : (T)0.f;
    """
    return params, "T col", body, "onnxmux_im2col"


def elementwise_specs() -> list[ElementwiseSpec]:
    """Every elementwise kernel definition, for checks that compile them all."""
    specs = [epilogue_spec(a, bias, z) for a in ACTIVATION_EXPR for bias in (False, True) for z in (False, True)]
    return specs + [gelu_spec(a) for a in GELU_EXPR] + [scale_add_spec(), im2col_spec()]


@functools.lru_cache(maxsize=None)
def epilogue(activation: str, has_bias: bool, has_z: bool) -> Any:
    """The CuPy kernel of ``epilogue_spec``."""
    return _cupy().ElementwiseKernel(*epilogue_spec(activation, has_bias, has_z))


@functools.lru_cache(maxsize=None)
def gelu(approximate: str) -> Any:
    """The CuPy kernel of ``gelu_spec``."""
    return _cupy().ElementwiseKernel(*gelu_spec(approximate))


@functools.lru_cache(maxsize=None)
def scale_add() -> Any:
    """The CuPy kernel of ``scale_add_spec``."""
    return _cupy().ElementwiseKernel(*scale_add_spec())


@functools.lru_cache(maxsize=None)
def im2col() -> Any:
    """The CuPy kernel of ``im2col_spec``."""
    return _cupy().ElementwiseKernel(*im2col_spec())


#: Block-wide reductions shared by the row kernels (one block per row, warps of 32).
_ROW_COMMON = r"""
#define NEG_INF __int_as_float(0xff800000)
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}
__device__ float block_reduce(float v, float* shared, bool is_max) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float identity = is_max ? NEG_INF : 0.f;
        v = lane < warps ? shared[lane] : identity;
        v = is_max ? warp_max(v) : warp_sum(v);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}
"""

_SOFTMAX = _ROW_COMMON + r"""
extern "C" __global__ void onnxmux_softmax_rows(const float* x, float* y, long long cols, float scale) {
    __shared__ float shared[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float m = NEG_INF;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, row[j] * scale);
    m = block_reduce(m, shared, true);
    float s = 0.f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        float e = expf(row[j] * scale - m);
        out[j] = e;
        s += e;
    }
    s = block_reduce(s, shared, false);
    float inv = 1.f / s;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) out[j] *= inv;
}
"""

_LAYER_NORM = _ROW_COMMON + r"""
extern "C" __global__ void onnxmux_layer_norm_rows(
    const float* x, const float* gamma, const float* beta, float* y, long long cols, float eps, int has_beta) {
    __shared__ float shared[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float s = 0.f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += row[j];
    float mean = block_reduce(s, shared, false) / cols;
    float q = 0.f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = row[j] - mean;
        q += d * d;
    }
    float rstd = rsqrtf(block_reduce(q, shared, false) / cols + eps);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = (row[j] - mean) * rstd * gamma[j];
        out[j] = has_beta ? v + beta[j] : v;
    }
}
"""


#: The RawKernel sources, for checks that compile them all.
RAW_SOURCES = {"onnxmux_softmax_rows": _SOFTMAX, "onnxmux_layer_norm_rows": _LAYER_NORM}


@functools.lru_cache(maxsize=None)
def softmax_rows() -> Any:
    """Softmax of ``scale * x`` over each contiguous row of float32, one block per row."""
    return _cupy().RawKernel(_SOFTMAX, "onnxmux_softmax_rows")


@functools.lru_cache(maxsize=None)
def layer_norm_rows() -> Any:
    """LayerNormalization of each contiguous float32 row with per-column scale and bias, one block per row."""
    return _cupy().RawKernel(_LAYER_NORM, "onnxmux_layer_norm_rows")


def row_threads(cols: int) -> int:
    """Threads per block for a row kernel: whole warps, at most 256."""
    return min(256, max(32, (cols + 31) // 32 * 32))
