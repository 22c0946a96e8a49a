"""CPU kernels of onnxruntime's attention operators: Attention (merged QKV projection, BERT and
GPT-2 style), MultiHeadAttention and RotaryEmbedding.

Masked key positions get ``mask_filter_value`` (default -10000) added to their scores, as in
onnxruntime; ``unidirectional`` masks the keys after each query's own position (past included).
The scaled product and softmax are ``fused.attend``, shared with onnxmux's own FusedAttention.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.attention import merge_heads, rotary_embedding, share_heads, split_heads
from onnxmux.providers.cpu.ops.fused import attend
from onnxmux.providers.cpu.registry import op

DOMAIN = "com.microsoft"


def _key_mask(xp: Any, mask: Any, batch: int, seq: int, past: int, total: int) -> Any:
    """Which keys each query may read, shaped to broadcast over (batch, heads, seq, total).

    ``mask`` is a raw 0/1 mask (batch, total) or (batch, seq, total), or key lengths (batch) or
    end and start positions (2 * batch).
    """
    if mask.ndim == 1:
        keys = xp.arange(total)[None, :]
        if mask.shape[0] == batch:
            allowed = keys < mask[:, None]
        elif mask.shape[0] == 2 * batch:
            allowed = (keys < mask[:batch, None]) & (keys >= mask[batch:, None])
        else:
            raise ValueError(f"a 1-D mask_index must have batch_size or 2 * batch_size entries, got {mask.shape[0]}")
        return allowed[:, None, None, :]
    if mask.ndim == 2:
        return (mask != 0)[:, None, None, :total]
    if mask.ndim == 3:
        return (mask != 0)[:, None, :, :total]
    raise ValueError(f"unsupported mask of shape {mask.shape} (4-D masks are not supported, as in onnxruntime's CPU provider)")


def _score_bias(
    xp: Any, mask: Any, causal: bool, attention_bias: Any, dims: tuple[int, int, int, int], fill: float, dtype: Any
) -> Any:
    """The additive bias of the scores: ``fill`` where a mask or causality forbids a key, plus
    ``attention_bias``; None when there is none of them."""
    batch, seq, past, total = dims
    allowed = None if mask is None else _key_mask(xp, mask, batch, seq, past, total)
    if causal:
        ahead = xp.arange(total)[None, :] <= (xp.arange(seq)[:, None] + past)
        allowed = ahead if allowed is None else allowed & ahead
    bias = None if allowed is None else xp.where(allowed, 0, fill).astype(dtype)
    if attention_bias is not None:
        bias = attention_bias.astype(dtype) if bias is None else bias + attention_bias
    return bias


def _scale(ctx: NodeContext, head_size: int) -> float:
    return ctx.attr("scale", 0.0) or 1 / math.sqrt(head_size)


@op("Attention", 1, domain=DOMAIN)
def ms_attention(ctx: NodeContext, xp: Any):
    """Self-attention with the Q, K, V projections merged into one weight (input_hidden, q+k+v)."""
    heads = ctx.attr("num_heads")
    sizes = ctx.attr("qkv_hidden_sizes", None)
    causal = bool(ctx.attr("unidirectional", 0))
    fill = ctx.attr("mask_filter_value", -10000.0)
    if ctx.attr("do_rotary", 0) or ctx.attr("past_present_share_buffer", 0):
        raise ctx.error("do_rotary and past_present_share_buffer are not supported")

    def run(x, weights, bias=None, mask_index=None, past=None, attention_bias=None, past_sequence_length=None):
        q_size, k_size, v_size = sizes or [weights.shape[1] // 3] * 3
        qkv = xp.matmul(x, weights)
        if bias is not None:
            qkv += bias
        q = split_heads(qkv[..., :q_size], heads)
        k = split_heads(qkv[..., q_size : q_size + k_size], heads)
        v = split_heads(qkv[..., q_size + k_size : q_size + k_size + v_size], heads)
        past_len = 0
        if past is not None:
            past_len = past.shape[3]
            k = xp.concatenate([past[0], k], axis=2)
            v = xp.concatenate([past[1], v], axis=2)
        batch, _, seq, head_size = q.shape
        dims = (batch, seq, past_len, k.shape[2])
        score_bias = _score_bias(xp, mask_index, causal, attention_bias, dims, fill, np.float32)
        context = attend(xp, q, k.swapaxes(-1, -2), v, _scale(ctx, head_size), score_bias)
        return merge_heads(context), xp.stack([k, v])

    return run


def _project(x: Any, bias: Any, part: int, heads: int) -> Any:
    """A (batch, seq, hidden) projection plus its third of the bias, as (batch, heads, seq, size)."""
    if bias is not None:
        size = x.shape[-1]
        x = x + bias[part * size : (part + 1) * size]
    return split_heads(x, heads)


@op("MultiHeadAttention", 1, domain=DOMAIN)
def multi_head_attention(ctx: NodeContext, xp: Any):
    """Self or cross attention of already projected Q, K, V: (batch, seq, hidden) each, or K and V
    given per head (batch, heads, kv_seq, size)."""
    heads = ctx.attr("num_heads")
    causal = bool(ctx.attr("unidirectional", 0))
    fill = ctx.attr("mask_filter_value", -10000.0)

    def run(
        query,
        key=None,
        value=None,
        bias=None,
        key_padding_mask=None,
        attention_bias=None,
        past_key=None,
        past_value=None,
        *rest,
    ):
        if query.ndim != 3 or key is None or key.ndim not in (3, 4):
            raise ValueError("packed QKV or KV inputs are not supported (onnxruntime's CPU provider has neither)")
        q = _project(query, bias, 0, heads)
        if key.ndim == 4:  # per head already (batch, heads, kv_seq, size)
            k, v = key, value
        else:
            k, v = _project(key, bias, 1, heads), _project(value, bias, 2, heads)
        past_len = 0
        if past_key is not None:
            past_len = past_key.shape[2]
            k = xp.concatenate([past_key, k], axis=2)
            v = xp.concatenate([past_value, v], axis=2)
        batch, _, seq, head_size = q.shape
        dims = (batch, seq, past_len, k.shape[2])
        score_bias = _score_bias(xp, key_padding_mask, causal, attention_bias, dims, fill, np.float32)
        context = attend(xp, q, k.swapaxes(-1, -2), v, _scale(ctx, head_size), score_bias)
        return merge_heads(context), k, v

    return run


@op("RotaryEmbedding", 1, domain=DOMAIN)
def ms_rotary_embedding(ctx: NodeContext, xp: Any):
    """RoPE of a (batch, seq, hidden) or (batch, heads, seq, size) input at ``position_ids``
    ((batch, seq), or one start offset); the ONNX RotaryEmbedding kernel does the rotation."""
    rotate = rotary_embedding(ctx, xp)
    heads = ctx.attr("num_heads", 0)

    def run(x, position_ids, cos_cache, sin_cache):
        seq = x.shape[-2] if x.ndim == 4 else x.shape[1]
        if position_ids.ndim == 1:  # one offset for every row
            position_ids = (position_ids.reshape(-1)[:1] + xp.arange(seq))[None, :].repeat(x.shape[0], axis=0)
        if x.ndim == 3 and not heads:  # one head size: the caches' full width
            size = 2 * cos_cache.shape[-1]
            y = rotate(x.reshape(x.shape[0], seq, -1, size).transpose(0, 2, 1, 3), cos_cache, sin_cache, position_ids)
            return y.transpose(0, 2, 1, 3).reshape(x.shape)
        return rotate(x, cos_cache, sin_cache, position_ids)

    return run


@op("GroupQueryAttention", 1, domain=DOMAIN)
def group_query_attention(ctx: NodeContext, xp: Any):
    """Causal attention whose query heads share fewer K/V heads, with a KV cache in (batch, kv_heads,
    seq, size) layout: the new keys and values are written after each row's past tokens
    (``seqlens_k + 1 - seq`` of them); rotary embedding optional (``do_rotary``)."""
    heads, kv_heads = ctx.attr("num_heads"), ctx.attr("kv_num_heads")
    window = ctx.attr("local_window_size", -1)
    do_rotary = bool(ctx.attr("do_rotary", 0))
    rotate = rotary_embedding(_RotaryContext(ctx.attr("rotary_interleaved", 0)), xp) if do_rotary else None
    for unsupported in ("k_quant_type", "v_quant_type"):
        if ctx.attr(unsupported, "NONE") != "NONE":
            raise ctx.error(f"{unsupported} (a quantized KV cache) is not supported")
    if ctx.attr("softcap", 0.0) or ctx.attr("smooth_softmax", 0) or not ctx.attr("causal", 1):
        raise ctx.error("softcap, smooth_softmax and causal=0 are not supported")

    def run(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache=None, sin_cache=None,
            position_ids=None, attention_bias=None, head_sink=None, *rest):  # fmt: skip
        if head_sink is not None or any(r is not None for r in rest):
            raise ValueError("head_sink, quantization scales, Q/K norms and query_seqlens are not supported")
        batch, seq = query.shape[:2]
        if key is None:  # packed (batch, seq, (heads + 2 * kv_heads) * size)
            size = query.shape[2] // (heads + 2 * kv_heads)
            query, key, value = xp.split(query, [heads * size, (heads + kv_heads) * size], axis=-1)
        q, k, v = split_heads(query, heads), split_heads(key, kv_heads), split_heads(value, kv_heads)
        size = q.shape[-1]
        lengths = seqlens_k.astype(np.int64) + 1  # valid keys per row after this step
        starts = lengths - seq  # where this step's tokens go
        if rotate is not None:
            positions = starts[:, None] + xp.arange(seq)[None, :] if position_ids is None else position_ids
            q = rotate(q, cos_cache, sin_cache, positions)
            k = rotate(k, cos_cache, sin_cache, positions)
        past = 0 if past_key is None else past_key.shape[2]
        total = max(past + seq, int(total_sequence_length.reshape(-1)[0]))
        present_k = xp.zeros((batch, kv_heads, total, size), dtype=k.dtype)
        present_v = xp.zeros((batch, kv_heads, total, size), dtype=v.dtype)
        for b in range(batch):
            start = int(starts[b])
            if past_key is not None and start > 0:
                present_k[b, :, :start] = past_key[b, :, :start]
                present_v[b, :, :start] = past_value[b, :, :start]
            present_k[b, :, start : start + seq] = k[b]
            present_v[b, :, start : start + seq] = v[b]
        keys = xp.arange(total)[None, None, :]
        position = starts[:, None, None] + xp.arange(seq)[None, :, None]
        allowed = (keys <= position) & (keys < lengths[:, None, None])
        if window > 0:
            allowed &= keys > position - window
        bias = xp.where(allowed[:, None], 0, -np.inf).astype(np.float32)
        if attention_bias is not None:
            bias = bias + attention_bias
        kt = share_heads(xp, present_k, heads).swapaxes(-1, -2)
        context = attend(xp, q, kt, share_heads(xp, present_v, heads), _scale(ctx, size), bias)
        return merge_heads(context), present_k, present_v

    return run


class _RotaryContext:
    """The attributes the ONNX RotaryEmbedding kernel reads, for rotating (batch, heads, seq, size) arrays."""

    def __init__(self, interleaved: int) -> None:
        self._attrs = {"interleaved": interleaved, "rotary_embedding_dim": 0, "num_heads": 0}

    def attr(self, name: str, default: Any = None) -> Any:
        return self._attrs.get(name, default)
