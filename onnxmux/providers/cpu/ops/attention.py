"""Attention-era operators: Attention, FlexAttention, RotaryEmbedding, SwiGLU, LinearAttention
and CausalConvWithState.

Attention scores run in the inputs' precision (bfloat16 products are rounded back to it) and
softmax in ``softmax_precision`` where the operator has one; a softmax row whose every score
is ``-inf`` yields zeros rather than NaN. The recurrences, the causal convolution and SwiGLU
accumulate half-precision inputs in float32.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable

import numpy as np

from onnxmux.core.types import numpy_dtype
from onnxmux.providers.cpu.registry import op

Kernel = Callable[..., Any]

_SOFTMAX_PRECISIONS = {1, 10, 11, 16}
_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _softmax(xp: Any, scores: Any) -> Any:
    """Softmax over the last axis; rows that are entirely ``-inf`` become zero rows."""
    peak = xp.max(scores, axis=-1, keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))
    weights = xp.exp(scores - peak)
    total = xp.sum(weights, axis=-1, keepdims=True)
    return weights / xp.where(total > 0, total, xp.ones_like(total))


def _swish(xp: Any, x: Any, alpha: float = 1.0) -> Any:
    """x * sigmoid(alpha * x), computed in at least float32 (overflow-free)."""
    wide = x.astype(np.promote_types(x.dtype, np.float32))
    return wide * (0.5 * (xp.tanh((0.5 * alpha) * wide) + 1))


def split_heads(x: Any, heads: int) -> Any:
    """(batch, seq, heads * size) -> (batch, heads, seq, size)."""
    batch, seq, hidden = x.shape
    return x.reshape(batch, seq, heads, hidden // heads).transpose(0, 2, 1, 3)


def merge_heads(x: Any) -> Any:
    """(batch, heads, seq, size) -> (batch, seq, heads * size)."""
    batch, heads, seq, size = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, seq, heads * size)


def share_heads(xp: Any, x: Any, heads: int) -> Any:
    """K or V heads repeated so that query head h reads kv head h // (heads / kv_heads)."""
    kv_heads = x.shape[1]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} kv heads")
    return x if heads == kv_heads else xp.repeat(x, heads // kv_heads, axis=1)


def _scaled_scores(xp: Any, q: Any, k: Any, scale: float | None) -> Any:
    """(q * sqrt(scale)) @ (k * sqrt(scale))^T in q's dtype; scale defaults to 1/sqrt(head_size)."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    root = np.float32(math.sqrt(scale)).astype(q.dtype)  # a scalar: no host array meets device ones
    product = xp.matmul((q * root).astype(q.dtype), (k * root).astype(q.dtype).swapaxes(-1, -2))
    return product.astype(q.dtype)


def _optional_scale(ctx: Any) -> float | None:
    """The ``scale`` attribute, None when absent (or 0, which means the default)."""
    return ctx.attr("scale", None) or None


def _softmax_precision(ctx: Any) -> np.dtype | None:
    """The dtype named by ``softmax_precision``, validated; None when absent."""
    code = ctx.attr("softmax_precision", None)
    if code is None:
        return None
    if code not in _SOFTMAX_PRECISIONS:
        raise ctx.error(f"unsupported softmax_precision {code}")
    return np.dtype(numpy_dtype(code))


def _structural_allowed(
    xp: Any,
    q_len: int,
    total: int,
    offset: Any,
    nonpad: Any,
    is_causal: bool,
    window: tuple[int, int],
) -> Any:
    """Keys each query may attend from causality, padding and windows; None when unrestricted.

    ``offset`` (an int, or a (batch, 1, 1, 1) array) places query i at absolute position
    i + offset.
    """
    position = xp.arange(q_len).reshape(-1, 1) + offset
    keys = xp.arange(total).reshape(1, -1)
    left, right = window
    conditions = []
    if is_causal:
        conditions.append(keys <= position)
    if left >= 0:
        conditions.append(keys >= position - left)
    if right >= 0:
        conditions.append(keys <= position + right)
    if nonpad is not None:
        conditions.append(keys < nonpad.reshape(-1, 1, 1, 1))
    return functools.reduce(operator.and_, conditions) if conditions else None


def _mask_bias(xp: Any, mask: Any, total: int, dtype: np.dtype) -> Any:
    """attn_mask as an additive bias: booleans select 0 / -inf, other types add as they are.

    A mask shorter than the key sequence is padded with disallowed (-inf) positions.
    """
    if mask.dtype == np.bool_:
        bias = xp.where(mask, 0, -np.inf).astype(dtype)
    else:
        bias = mask.astype(dtype)
    short = total - bias.shape[-1]
    if short > 0:
        bias = xp.pad(bias, [(0, 0)] * (bias.ndim - 1) + [(0, short)], constant_values=-np.inf)
    return bias


@op("Attention", 23, 24, 25)
def attention(ctx: Any, xp: Any) -> Kernel:
    """Scaled dot-product attention (MHA/GQA/MQA) with masks, KV cache, softcap and windows."""
    q_heads = ctx.attr("q_num_heads", 0)
    kv_heads = ctx.attr("kv_num_heads", 0)
    is_causal = bool(ctx.attr("is_causal", 0))
    scale = _optional_scale(ctx)
    softcap = ctx.attr("softcap", 0.0)
    precision = _softmax_precision(ctx)
    mode = ctx.attr("qk_matmul_output_mode", 0)
    if mode not in (0, 1, 2, 3):
        raise ctx.error(f"qk_matmul_output_mode must be 0..3, got {mode}")
    window = (ctx.attr("left_window_size", -1), ctx.attr("right_window_size", -1))
    if q_heads < 0 or kv_heads < 0:
        raise ctx.error("q_num_heads and kv_num_heads must be positive")

    def run(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
        packed = Q.ndim == 3
        if packed:
            if not (q_heads and kv_heads):
                raise ValueError("3-D inputs need the q_num_heads and kv_num_heads attributes")
            q, k, v = split_heads(Q, q_heads), split_heads(K, kv_heads), split_heads(V, kv_heads)
        else:
            q, k, v = Q, K, V
        if past_key is not None:
            k = xp.concatenate([past_key, k], axis=2)
            v = xp.concatenate([past_value, v], axis=2)
        dtype = Q.dtype
        heads, q_len, total = q.shape[1], q.shape[2], k.shape[2]
        raw = _scaled_scores(xp, q, share_heads(xp, k, heads), scale)
        capped = (softcap * xp.tanh(raw / softcap)).astype(dtype) if softcap else raw

        if past_key is not None:
            offset = past_key.shape[2]
        elif nonpad_kv_seqlen is not None:
            offset = nonpad_kv_seqlen.reshape(-1, 1, 1, 1) - q_len
        else:
            offset = 0
        allowed = _structural_allowed(xp, q_len, total, offset, nonpad_kv_seqlen, is_causal, window)
        biased = capped
        if allowed is not None:
            biased = (biased + xp.where(allowed, 0, -np.inf).astype(dtype)).astype(dtype)
        if attn_mask is not None:
            biased = (biased + _mask_bias(xp, attn_mask, total, dtype)).astype(dtype)

        probs = _softmax(xp, biased.astype(precision or dtype)).astype(dtype)
        y = xp.matmul(probs, share_heads(xp, v, heads).astype(dtype)).astype(dtype)
        qk_output = (raw, capped, biased, probs)[mode]
        return (merge_heads(y) if packed else y), k, v, qk_output

    return run


@op("FlexAttention", 1, domain="ai.onnx.preview")
def flex_attention(ctx: Any, xp: Any) -> Kernel:
    """Scaled dot-product attention with optional score_mod / prob_mod subgraphs."""
    scale = _optional_scale(ctx)
    precision = _softmax_precision(ctx)
    score_mod = ctx.subgraph("score_mod") if "score_mod" in ctx.attrs else None
    prob_mod = ctx.subgraph("prob_mod") if "prob_mod" in ctx.attrs else None

    def run(Q, K, V, *outer):
        work = precision or np.dtype(np.float64 if Q.dtype == np.float64 else np.float32)
        heads = Q.shape[1]
        scores = _scaled_scores(xp, Q, share_heads(xp, K, heads), scale).astype(work)
        if score_mod is not None:
            (scores,) = score_mod([scores], list(outer))
        probs = _softmax(xp, scores)
        if prob_mod is not None:
            (probs,) = prob_mod([probs], list(outer))
        values = share_heads(xp, V, heads).astype(work)
        return xp.matmul(probs, values).astype(Q.dtype)

    return run


@op("RotaryEmbedding", 23)
def rotary_embedding(ctx: Any, xp: Any) -> Kernel:
    """Rotary positional embedding (RoPE), split-half or interleaved, full or partial."""
    interleaved = bool(ctx.attr("interleaved", 0))
    rotary_dim = ctx.attr("rotary_embedding_dim", 0)
    num_heads = ctx.attr("num_heads", 0)
    if rotary_dim < 0 or rotary_dim % 2:
        raise ctx.error(f"rotary_embedding_dim must be even and non-negative, got {rotary_dim}")

    def run(X, cos_cache, sin_cache, position_ids=None):
        if X.ndim == 4:
            x = X.transpose(0, 2, 1, 3)
        elif num_heads:
            x = X.reshape(X.shape[0], X.shape[1], num_heads, -1)
        else:
            raise ValueError("3-D input needs the num_heads attribute")
        dim = rotary_dim or x.shape[-1]
        if position_ids is not None:
            cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
        cos, sin = cos_cache[:, :, None, :], sin_cache[:, :, None, :]
        rotated, kept = x[..., :dim], x[..., dim:]
        if interleaved:
            first, second = rotated[..., 0::2], rotated[..., 1::2]
        else:
            first, second = rotated[..., : dim // 2], rotated[..., dim // 2 :]
        real = cos * first - sin * second
        imag = sin * first + cos * second
        if interleaved:
            turned = xp.stack([real, imag], axis=-1).reshape(rotated.shape)
        else:
            turned = xp.concatenate([real, imag], axis=-1)
        y = xp.concatenate([turned.astype(X.dtype), kept], axis=-1)
        return y.transpose(0, 2, 1, 3) if X.ndim == 4 else y.reshape(X.shape)

    return run


@op("SwiGLU", 28)
def swiglu(ctx: Any, xp: Any) -> Kernel:
    """Y = A * sigmoid(alpha * A) * B."""
    alpha = ctx.attr("alpha", 1.0)

    def run(A, B):
        if A.shape != B.shape:
            raise ValueError(f"A {A.shape} and B {B.shape} must have the same shape")
        return (_swish(xp, A, alpha) * B).astype(A.dtype)

    return run


@op("CausalConvWithState", 27)
def causal_conv_with_state(ctx: Any, xp: Any) -> Kernel:
    """Depthwise causal 1-D conv over [past_state, input] (optional SiLU), and the new state."""
    activation = ctx.attr("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise ctx.error(f"unknown activation '{activation}'")

    def run(data, weight, bias=None, past_state=None):
        batch, channels, length = data.shape
        taps = weight.shape[-1]
        if past_state is None:
            past_state = xp.zeros((batch, channels, taps - 1), dtype=data.dtype)
        padded = xp.concatenate([past_state.astype(data.dtype), data], axis=2)
        work = np.promote_types(data.dtype, np.float32)
        wide, kernel = padded.astype(work), weight.reshape(channels, taps).astype(work)
        out = sum(kernel[None, :, j, None] * wide[:, :, j : j + length] for j in range(taps))
        if bias is not None:
            out = out + bias.astype(work)[None, :, None]
        out = out.astype(data.dtype)
        if activation != "none":
            out = _swish(xp, out).astype(data.dtype)
        return out, padded[:, :, length:]

    return run


@op("LinearAttention", 27)
def linear_attention(ctx: Any, xp: Any) -> Kernel:
    """Recurrent linear attention (linear, gated, delta, gated_delta rules) with a carried state."""
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in _UPDATE_RULES:
        raise ctx.error(f"unknown update_rule '{rule}'")
    q_heads = ctx.attr("q_num_heads")
    kv_heads = ctx.attr("kv_num_heads")
    if q_heads <= 0 or kv_heads <= 0 or q_heads % kv_heads:
        raise ctx.error(f"q_num_heads ({q_heads}) must be a positive multiple of kv_num_heads ({kv_heads})")
    scale = _optional_scale(ctx)
    gated = rule in ("gated", "gated_delta")
    delta = rule in ("delta", "gated_delta")

    def run(query, key, value, past_state=None, decay=None, beta=None):
        if gated and decay is None:
            raise ValueError(f"update_rule '{rule}' needs the decay input")
        if delta and beta is None:
            raise ValueError(f"update_rule '{rule}' needs the beta input")
        batch, steps, _ = query.shape
        work = np.promote_types(query.dtype, np.float32)
        q = query.astype(work).reshape(batch, steps, q_heads, -1)
        k = key.astype(work).reshape(batch, steps, kv_heads, -1)
        v = value.astype(work).reshape(batch, steps, kv_heads, -1)
        key_size, value_size = k.shape[-1], v.shape[-1]
        factor = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
        state_dtype = past_state.dtype if past_state is not None else query.dtype
        if past_state is None:
            state = xp.zeros((batch, kv_heads, key_size, value_size), dtype=work)
        else:
            state = past_state.astype(work)
        # Per-step decay factors broadcast over the state's key rows: (batch, steps, kv_heads, key_size | 1).
        decay_factor = xp.exp(decay.astype(work).reshape(batch, steps, kv_heads, -1)) if gated else None
        rate = beta.astype(work).reshape(batch, steps, -1) if delta else None
        group = q_heads // kv_heads
        outputs = []
        for t in range(steps):
            if gated:
                state = state * decay_factor[:, t, :, :, None]
            k_t, v_t = k[:, t], v[:, t]
            if delta:
                recalled = xp.einsum("bhkv,bhk->bhv", state, k_t)
                v_t = rate[:, t, :, None] * (v_t - recalled)
            state = state + k_t[..., :, None] * v_t[..., None, :]
            q_t = q[:, t].reshape(batch, kv_heads, group, key_size)
            outputs.append(factor * xp.einsum("bhgk,bhkv->bhgv", q_t, state))
        output = xp.stack(outputs, axis=1).reshape(batch, steps, q_heads * value_size)
        return output.astype(query.dtype), state.astype(state_dtype)

    return run
