"""Matrix products split across a session's intra-op threads.

numpy's BLAS pool is held at one thread while a session runs (``core/threads.py``); a large
product is instead cut into shards along its longer output axis, each a one-thread BLAS call on
slices of the operands writing into its slice of the result, and the shards are run by the
calling thread and the session's workers (numpy releases the GIL inside BLAS). Small products,
other array modules (CuPy) and non-BLAS dtypes go straight to ``xp.matmul``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from onnxmux.core import threads

#: Least multiply-adds per shard (about 0.25 ms on one core): below it the hand-off between
#: threads (a worker's wake-up, the GIL) costs about what the second thread saves (measured on ViT).
SHARD_MACS = 1 << 24
#: Shards per thread: more than one, so that a thread the OS runs late leaves work to the others.
SHARDS_PER_THREAD = 2


def matmul(xp: Any, a: Any, b: Any) -> Any:
    """``xp.matmul(a, b)``, sharded across the running session's threads when it is large."""
    pool = threads.current()
    if pool is None or xp is not np or a.ndim < 2 or b.ndim < 2 or a.dtype != b.dtype or a.dtype not in _BLAS:
        return xp.matmul(a, b)
    (m, k), n = a.shape[-2:], b.shape[-1]
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return xp.matmul(a, b)  # numpy's own error message
    count = min(pool.threads * SHARDS_PER_THREAD, math.prod(batch) * m * k * n // SHARD_MACS, max(m, n))
    if count < 2 or k != b.shape[-2]:
        return xp.matmul(a, b)
    out = np.empty((*batch, m, n), a.dtype)
    edges = [round(i * max(m, n) / count) for i in range(count + 1)]
    if m >= n:
        shards = [partial(np.matmul, a[..., s:e, :], b, out=out[..., s:e, :]) for s, e in zip(edges, edges[1:])]
    else:
        shards = [partial(np.matmul, a, b[..., s:e], out=out[..., s:e]) for s, e in zip(edges, edges[1:])]
    pool.run_shards(shards)
    return out


_BLAS = (np.dtype(np.float32), np.dtype(np.float64))
