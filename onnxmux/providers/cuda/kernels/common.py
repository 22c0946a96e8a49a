"""What the hand-written kernels share: the dtypes their CUDA source covers, and activation parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cuda.kernels.raw import ACTIVATION_EXPR

#: Element types the elementwise kernels compute in float for (float64 keeps the shared path).
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
FLOAT32 = np.dtype(np.float32)


def activation_of(ctx: NodeContext) -> tuple[str, float, float]:
    """A fused node's activation name and its two parameters (unused ones 0)."""
    name = ctx.attr("activation", "")
    if name not in ACTIVATION_EXPR:
        raise ctx.error(f"unsupported activation '{name}' (supported: {', '.join(n for n in ACTIVATION_EXPR if n)})")
    params = [float(p) for p in ctx.attr("activation_params", [])] + [0.0, 0.0]
    return name, params[0], params[1]


def contiguous_float32(*arrays: Any) -> bool:
    """Whether every array given (None ones skipped) is a C-contiguous float32 array."""
    return all(a is None or (a.dtype == FLOAT32 and a.flags.c_contiguous) for a in arrays)
