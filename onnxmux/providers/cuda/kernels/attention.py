"""Attention's core (``com.onnxmux.FusedAttention``): ``softmax(scale * Q @ Kt + mask) @ V`` as
two cuBLAS GEMMs around one scale-and-mask pass and one row-softmax launch, in place on the scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cuda.kernels import raw
from onnxmux.providers.cuda.kernels.common import FLOAT32
from onnxmux.providers.cuda.kernels.normalization import softmax_last_axis
from onnxmux.providers.cuda.kernels.registry import op
from onnxmux.providers.cuda.table import run_shared


@op("FusedAttention", 1, domain="com.onnxmux")
def fused_attention(ctx: NodeContext, xp: Any):
    """Scores by GEMM, scale+mask+softmax in place (two launches), then the GEMM with V."""
    shared = run_shared(ctx, xp)
    scale = float(ctx.attr("scale", 1.0))

    def run(q, kt, v, mask=None):
        if any(a is not None and a.dtype != FLOAT32 for a in (q, kt, v, mask)):
            return shared(q, kt, v, mask)
        scores = xp.matmul(q, kt)  # a new C-contiguous array: the softmax rows are its last axis
        if not scores.size or (mask is not None and np.broadcast_shapes(scores.shape, mask.shape) != scores.shape):
            return shared(q, kt, v, mask)  # empty, or a mask that broadcasts the scores larger
        if mask is not None:
            raw.scale_add()(mask, scale, scores)
            softmax_last_axis(xp, scores, scores.shape[-1], 1.0, out=scores)
        else:
            softmax_last_axis(xp, scores, scores.shape[-1], scale, out=scores)
        return xp.matmul(scores, v)

    return run
