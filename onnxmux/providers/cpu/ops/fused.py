"""CPU kernels of onnxmux's own ``com.onnxmux`` domain: the nodes the graph optimizer fuses.

* ``FusedConv``: Conv, plus an optional same-shaped ``Z`` added, plus an activation, the last
  two applied in place on the Conv's freshly computed output.
* ``FusedGemm``: Gemm (or, for inputs above 2-D, MatMul with a broadcast bias) plus an activation.
* ``FusedAttention``: ``softmax(scale * Q @ Kᵀ + mask) @ V`` over the last axis, the softmax
  computed in place on the scores (Kᵀ is given already transposed; mask is optional).
* ``Gelu``, ``LayerNormalization`` and ``RMSNormalization``: the ONNX operators, for models whose
  opset predates them.

``activation`` names one of ``ACTIVATIONS``; ``activation_params`` holds its parameters
(LeakyRelu: alpha; HardSigmoid: alpha, beta; Clip: min, max; Swish: alpha), as in onnxruntime's fused ops.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.donation import donating, fits, full_float, owned
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops.conv import conv
from onnxmux.providers.cpu.ops.normalization import layer_normalization, rms_normalization
from onnxmux.providers.cpu.ops.pointwise import gelu as gelu_values, gelu_inplace, hard_swish_inplace, sigmoid_inplace, swish_inplace
from onnxmux.providers.cpu.registry import op

DOMAIN = "com.onnxmux"
#: An activation applied in place: ``apply(xp, y, params)`` overwrites ``y`` and returns it.
Activation = Callable[[Any, Any, "list[float]"], Any]


def _relu(xp: Any, y: Any, params: list[float]) -> Any:
    return xp.maximum(y, 0, out=y)


def _leaky_relu(xp: Any, y: Any, params: list[float]) -> Any:
    negative = y < 0
    y[negative] *= params[0]
    return y


def _sigmoid(xp: Any, y: Any, params: list[float]) -> Any:
    return sigmoid_inplace(xp, y)


def _hard_swish(xp: Any, y: Any, params: list[float]) -> Any:
    return hard_swish_inplace(xp, y)


def _swish(xp: Any, y: Any, params: list[float]) -> Any:
    return swish_inplace(xp, y, params[0])


def _tanh(xp: Any, y: Any, params: list[float]) -> Any:
    return xp.tanh(y, out=y)


def _clip(xp: Any, y: Any, params: list[float]) -> Any:
    return xp.clip(y, params[0], params[1], out=y)


def _hard_sigmoid(xp: Any, y: Any, params: list[float]) -> Any:
    y *= params[0]
    y += params[1]
    return xp.clip(y, 0, 1, out=y)


#: The Gelu activations (erf form, tanh approximation) and their ``approximate`` attribute.
GELU_ACTIVATIONS = {"Gelu": "none", "FastGelu": "tanh"}


def _gelu(approximate: str) -> Activation:
    def apply(xp: Any, y: Any, params: list[float]) -> Any:
        if y.flags.c_contiguous and full_float(y):
            return gelu_inplace(xp, y, approximate)
        y[...] = gelu_values(xp, y, approximate)  # a strided view: computed aside, then copied in
        return y

    return apply


#: Activation name -> (in-place function, number of activation_params it needs).
ACTIVATIONS: dict[str, tuple[Activation, int]] = {
    "Relu": (_relu, 0),
    "LeakyRelu": (_leaky_relu, 1),
    "Sigmoid": (_sigmoid, 0),
    "Tanh": (_tanh, 0),
    "Clip": (_clip, 2),
    "HardSigmoid": (_hard_sigmoid, 2),
    "HardSwish": (_hard_swish, 0),
    "Swish": (_swish, 1),
    **{name: (_gelu(approximate), 0) for name, approximate in GELU_ACTIVATIONS.items()},
}


def activation(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """The node's in-place activation as ``apply(y) -> y`` (identity when none is set)."""
    name = ctx.attr("activation", "")
    if not name:
        return lambda y: y
    if name not in ACTIVATIONS:
        raise ctx.error(f"unsupported activation '{name}' (supported: {', '.join(ACTIVATIONS)})")
    apply, count = ACTIVATIONS[name]
    params = [float(p) for p in ctx.attr("activation_params", [])]
    if not params and count:  # onnxruntime's FusedGemm names them activation_alpha, _beta
        named = [ctx.attr(f"activation_{key}", None) for key in ("alpha", "beta")[:count]]
        params = [float(p) for p in named if p is not None]
    if len(params) != count:
        raise ctx.error(f"activation '{name}' needs {count} activation_params, got {len(params)}")
    return lambda y: sharded.in_place(xp, y, lambda part: apply(xp, part, params))


@op("FusedConv", 1, domain=DOMAIN)
def fused_conv(ctx: NodeContext, xp: Any):
    """Conv(X, W, B), plus Z when given, then the activation, all on the Conv's own output buffer."""
    convolve = conv(ctx, xp)
    act = activation(ctx, xp)

    def run(x, w, b=None, z=None):
        y = convolve(x, w, b)
        if z is not None:
            y += z
        return act(y)

    return run


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype products run in: BLAS floats as they are, narrower floats as float32."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) or dtype.kind in "iub" else np.dtype(np.float32)


@op("FusedGemm", 1, domain=DOMAIN)
def fused_gemm(ctx: NodeContext, xp: Any):
    """``act(alpha * op(A) @ op(B) + beta * C)``; above 2-D, MatMul broadcasting (no transposes).

    With a Gelu activation and a bias row C, the bias is added inside Gelu's chunks (one pass fewer)."""
    alpha = ctx.attr("alpha", 1.0)
    beta = ctx.attr("beta", 1.0)
    trans_a = ctx.attr("transA", 0)
    trans_b = ctx.attr("transB", 0)
    act = activation(ctx, xp)
    gelu_form = GELU_ACTIVATIONS.get(ctx.attr("activation", ""))

    def run(a, b, c=None):
        if a.ndim == 2 and b.ndim == 2:
            a, b = (a.T if trans_a else a), (b.T if trans_b else b)
        elif trans_a or trans_b or a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"FusedGemm transposes need 2-D inputs, got {a.shape} and {b.shape}")
        work = compute_dtype(a.dtype)
        y = sharded.matmul(xp, a.astype(work, copy=False), b.astype(work, copy=False))
        if alpha != 1:
            y *= alpha
        if gelu_form is not None and beta == 1 and _is_bias_row(c, y) and y.flags.c_contiguous:
            return gelu_inplace(xp, y, gelu_form, c.reshape(-1)).astype(a.dtype, copy=False)
        if c is not None and beta != 0:
            y += c * beta if beta != 1 else c
        return act(y).astype(a.dtype, copy=False)

    return run


def _is_bias_row(c: Any, y: Any) -> bool:
    """Whether ``c`` holds one value per column of ``y`` (a float32/float64 array of c's dtype)."""
    if c is None or c.dtype != y.dtype or not full_float(y) or c.ndim > y.ndim or y.size == 0:
        return False
    return c.size == y.shape[-1] and c.shape[-1] == y.shape[-1]


@op("FusedAttention", 1, domain=DOMAIN)
def fused_attention(ctx: NodeContext, xp: Any):
    """``softmax(scale * Q @ Kt + mask) @ V`` with one scores buffer, scaled and normalized in place."""
    scale = ctx.attr("scale", 1.0)
    return lambda q, kt, v, mask=None: attend(xp, q, kt, v, scale, mask)


def attend(xp: Any, q: Any, kt: Any, v: Any, scale: float, mask: Any = None) -> Any:
    """``softmax(scale * q @ kt + mask) @ v``, the softmax in place on one scores buffer.

    Large score tensors are computed one leading index (batch, head) at a time, so that each
    slice's passes run in cache.
    """
    dtype, work = q.dtype, compute_dtype(q.dtype)
    q, kt, v = (a.astype(work, copy=False) for a in (q, kt, v))
    if scale != 1:
        q = q * work.type(scale)  # the smaller operand: scaled instead of the scores
    lead = np.broadcast_shapes(q.shape[:-2], kt.shape[:-2], v.shape[:-2])
    scores_shape = lead + (q.shape[-2], kt.shape[-1])
    if mask is not None:
        grown = np.broadcast_shapes(scores_shape, mask.shape)
        if grown == scores_shape and mask.size <= _ZERO_MASK_CHECK and not mask.any():
            mask = None  # nothing masked (a batch without padding): no pass to add zeros
        scores_shape = grown
    if len(lead) == 0 or math.prod(scores_shape) <= _SLICE_SCORES or scores_shape[:-2] != lead:
        return _attend_slice(xp, q, kt, v, mask).astype(dtype, copy=False)
    out = xp.empty(lead + (q.shape[-2], v.shape[-1]), work)
    parts = [xp.broadcast_to(a, lead + a.shape[-2:]) for a in (q, kt, v)]
    if mask is not None:
        mask = xp.broadcast_to(mask, scores_shape)
    for index in np.ndindex(*lead):
        part_mask = None if mask is None else mask[index]
        out[index] = _attend_slice(xp, *(a[index] for a in parts), part_mask)
    return out.astype(dtype, copy=False)


#: Masks of at most this many elements are checked for being all zeros (a microsecond or so).
_ZERO_MASK_CHECK = 1 << 14
#: Score tensors above this many elements (1 MB of float32) are computed slice by slice.
_SLICE_SCORES = 1 << 18
#: Largest score for which exp needs no shift: exp(60) times any row length stays finite.
_EXP_SAFE = 60.0
#: Smallest row sum of unshifted exps taken as exact: the row's largest term is far from subnormal.
_SUM_SAFE = 1e-20


def _attend_slice(xp: Any, q: Any, kt: Any, v: Any, mask: Any) -> Any:
    """``softmax(q @ kt + mask) @ v`` with the row normalisation applied to the (narrower) result.

    Softmax is shift-invariant; the usual row-maximum shift is only needed against overflow and
    underflow, so exp runs unshifted when the largest score is small and every row sum stays normal,
    and otherwise the scores are recomputed and shifted by their row maxima.
    """
    scores = sharded.matmul(xp, q, kt)
    if mask is not None:
        scores = _add_mask(xp, scores, mask)
    if scores.size and float(scores.max()) <= _EXP_SAFE:
        xp.exp(scores, out=scores)
        sums = xp.matmul(scores, xp.ones((scores.shape[-1], 1), scores.dtype))
        if float(sums.min()) >= _SUM_SAFE:
            out = sharded.matmul(xp, scores, v)
            out *= xp.reciprocal(sums, out=sums)
            return out
        scores = sharded.matmul(xp, q, kt)
        if mask is not None:
            scores = _add_mask(xp, scores, mask)
    scores -= scores.max(axis=-1, keepdims=True)
    xp.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return sharded.matmul(xp, scores, v)


def _add_mask(xp: Any, scores: Any, mask: Any) -> Any:
    """``scores + mask``: in place unless the mask broadcasts the scores to a larger shape."""
    if np.broadcast_shapes(scores.shape, mask.shape) != scores.shape:
        return scores + mask
    scores += mask
    return scores


@op("Gelu", 1, domain=DOMAIN)
def fused_gelu(ctx: NodeContext, xp: Any):
    """ONNX Gelu (opset 20 semantics: erf, or ``approximate="tanh"``) for models whose opset predates
    it, computed in place on one buffer (the fused pattern's five nodes each allocated their own)."""
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"approximate must be 'none' or 'tanh', got '{approximate}'")
    return gelu(xp, approximate == "tanh")


def gelu(xp: Any, tanh: bool) -> Callable[[Any], Any]:
    """Gelu as ``run(x)``: the erf form, or with ``tanh`` its tanh approximation, in few in-place passes."""
    approximate = "tanh" if tanh else "none"
    return donating(
        lambda x: gelu_values(xp, x, approximate).astype(x.dtype, copy=False),
        lambda x: gelu_inplace(xp, x, approximate),
        full_float,
    )


def biased_gelu(xp: Any, tanh: bool) -> Callable[..., Any]:
    """Gelu of ``x + bias`` (no bias: of x) as ``run(x, bias)``, able to take x donated."""
    apply = gelu(xp, tanh)
    approximate = "tanh" if tanh else "none"

    def run(x: Any, bias: Any = None) -> Any:
        return apply(x if bias is None else x + bias)

    def variant(x: Any, bias: Any = None) -> Any:
        if not owned(x) or not full_float(x) or (bias is not None and (bias.dtype != x.dtype or not fits(x, x, bias))):
            return run(x, bias)
        if _is_bias_row(bias, x):
            return gelu_inplace(xp, x, approximate, bias.reshape(-1))
        if bias is not None:
            xp.add(x, bias, out=x)
        return gelu_inplace(xp, x, approximate)

    run.donate = lambda index: variant if index == 0 else None  # type: ignore[attr-defined]
    return run


def gate(y: Any, x: Any) -> Any:
    """``0.5 * x * (1 + y)`` in place on ``y`` (an erf or tanh of x), cast back to x's dtype."""
    y += 1
    y *= x
    y *= 0.5
    return y.astype(x.dtype, copy=False)


@op("LayerNormalization", 1, domain=DOMAIN)
def fused_layer_normalization(ctx: NodeContext, xp: Any):
    """ONNX LayerNormalization (opset 17 semantics) for models whose opset predates it."""
    return layer_normalization(ctx, xp)


@op("RMSNormalization", 1, domain=DOMAIN)
def fused_rms_normalization(ctx: NodeContext, xp: Any):
    """ONNX RMSNormalization (opset 23 semantics) for models whose opset predates it."""
    return rms_normalization(ctx, xp)
