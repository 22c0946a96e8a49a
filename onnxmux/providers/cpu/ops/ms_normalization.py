"""CPU kernels of onnxruntime's normalization fusions: SkipLayerNormalization,
SkipSimplifiedLayerNormalization, SimplifiedLayerNormalization (an RMS norm, which onnxruntime
declares in the ONNX domain) and BERT's EmbedLayerNormalization.

Statistics are computed in float32 (or float64 for float64 inputs) over the last axis, unless
an ``axis`` attribute says otherwise; the optional mean / inverse-deviation outputs are those
statistics, as in onnxruntime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.fused import compute_dtype
from onnxmux.providers.cpu.ops.normalization import rms_normalization, rms_standardize, standardize
from onnxmux.providers.cpu.registry import op

DOMAIN = "com.microsoft"
#: onnxruntime's default epsilon of its Skip and Embed layer norms.
_FUSED_EPSILON = 1e-12


def _affine(normalized: Any, gamma: Any, beta: Any, dtype: np.dtype) -> Any:
    """``normalized * gamma + beta`` (beta optional) in ``dtype``."""
    y = normalized * gamma
    if beta is not None:
        y += beta
    return y.astype(dtype, copy=False)


def _skip_sum(x: Any, skip: Any, bias: Any) -> Any:
    """``input + skip (+ bias)``: the residual sum the Skip norms normalize."""
    total = x + skip
    if bias is not None:
        total += bias
    return total


@op("SkipLayerNormalization", 1, domain=DOMAIN)
def skip_layer_normalization(ctx: NodeContext, xp: Any):
    """LayerNorm over the last axis of ``input + skip + bias``; also mean, inv_std_var and the sum."""
    epsilon = ctx.attr("epsilon", _FUSED_EPSILON)

    def run(x, skip, gamma, beta=None, bias=None):
        total = _skip_sum(x, skip, bias)
        normalized, mean, inv_std = standardize(xp, total.astype(compute_dtype(x.dtype), copy=False), (-1,), epsilon)
        return _affine(normalized, gamma, beta, x.dtype), mean, inv_std, total

    return run


@op("SkipSimplifiedLayerNormalization", 1, domain=DOMAIN)
def skip_simplified_layer_normalization(ctx: NodeContext, xp: Any):
    """RMS norm over the last axis of ``input + skip + bias``; outputs as SkipLayerNormalization's
    (its mean output is not computed by onnxruntime either: zeros here)."""
    epsilon = ctx.attr("epsilon", _FUSED_EPSILON)

    def run(x, skip, gamma, bias=None):
        total = _skip_sum(x, skip, bias)
        normalized, inv_rms = rms_standardize(xp, total.astype(compute_dtype(x.dtype), copy=False), (-1,), epsilon)
        return _affine(normalized, gamma, None, x.dtype), xp.zeros_like(inv_rms), inv_rms, total

    return run


op("SimplifiedLayerNormalization", 1)(rms_normalization)
op("SimplifiedLayerNormalization", 1, domain=DOMAIN)(rms_normalization)


@op("EmbedLayerNormalization", 1, domain=DOMAIN)
def embed_layer_normalization(ctx: NodeContext, xp: Any):
    """LayerNorm of word + position (+ segment) embeddings; also each row's count of unmasked
    tokens (int32) and the embeddings' sum."""
    epsilon = ctx.attr("epsilon", _FUSED_EPSILON)

    def run(
        input_ids,
        segment_ids,
        word_embedding,
        position_embedding,
        segment_embedding,
        gamma,
        beta,
        mask=None,
        position_ids=None,
    ):
        batch, seq = input_ids.shape
        if position_ids is None:
            position_ids = xp.arange(seq)[None, :]
        total = word_embedding[input_ids] + position_embedding[position_ids]
        if segment_ids is not None and segment_embedding is not None:
            total = total + segment_embedding[segment_ids]
        normalized, _, _ = standardize(xp, total.astype(compute_dtype(total.dtype), copy=False), (-1,), epsilon)
        if mask is None:
            counts = xp.zeros(batch, np.int32)
        else:
            counts = xp.count_nonzero(mask, axis=-1).astype(np.int32)
        return _affine(normalized, gamma, beta, total.dtype), counts, total

    return run
