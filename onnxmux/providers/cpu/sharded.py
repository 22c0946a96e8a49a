"""Matrix products and large element-wise work split across a session's intra-op threads.

numpy's BLAS pool is held at one thread while a session runs (``core/threads.py``); a large
product is instead cut into shards along its longer output axis, each a one-thread BLAS call on
slices of the operands writing into its slice of the result, and the shards are run by the
calling thread and the session's workers (numpy releases the GIL inside BLAS). Small products,
other array modules (CuPy) and non-BLAS dtypes go straight to ``xp.matmul``.

Element-wise kernels (Gelu, a fused activation) hand their work to ``chunks`` as a function of an
element range; numpy releases the GIL inside ufunc loops, so large ranges run in parallel, and
as every element is computed by the same ufunc calls on the same aligned slices, the results are
the same bits as on one thread.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import numpy as np

from onnxmux.core import threads

#: Least multiply-adds per shard (about 0.25 ms on one core): below it the hand-off between
#: threads (a worker's wake-up, the GIL) costs about what the second thread saves (measured on ViT).
SHARD_MACS = 1 << 24
#: Least elements per element-wise shard: below it a worker's hand-off (and the GIL between the
#: passes) costs about what it saves (64K made BERT's and ViT's Gelu slower on two threads).
SHARD_ELEMENTS = 1 << 17
#: Element-wise shards start at multiples of this many elements (4 KB of float32), so that each
#: ufunc call sees the same memory alignment as on one thread.
SHARD_ALIGN = 1 << 10
#: The dtypes BLAS computes in directly.
BLAS_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: Elements per chunk of an in-place element-wise pass (``in_place``): 256 KB of float32, so that a
#: chunk and an activation's temporary stay in a 1 MB L2 cache.
IN_PLACE_CHUNK = 1 << 16
#: Shards per thread: more than one, so that a thread the OS runs late leaves work to the others.
SHARDS_PER_THREAD = 2


def matmul(xp: Any, a: Any, b: Any) -> Any:
    """``xp.matmul(a, b)``, sharded across the running session's threads when it is large."""
    pool = threads.current()
    if pool is None or xp is not np or a.ndim < 2 or b.ndim < 2 or a.dtype != b.dtype or a.dtype not in BLAS_FLOATS:
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


def chunks(xp: Any, size: int, work: Callable[[int, int], Any], align: int = SHARD_ALIGN) -> None:
    """``work(start, end)`` over ``range(size)`` element ranges: once over all of it, or, inside a
    session with several threads and ``size`` large, over shards starting at multiples of
    ``align`` and at least ``SHARD_ELEMENTS`` long, run by the calling thread and the session's workers."""
    count = _shard_count(xp, size, align)
    if count < 2:
        work(0, size)
        return
    edges = sorted({min(size, round(i * size / count / align) * align) for i in range(count)} | {size})
    threads.current().run_shards([partial(work, s, e) for s, e in zip(edges, edges[1:]) if e > s])  # type: ignore[union-attr]


def in_place(xp: Any, y: Any, apply: Callable[[Any], Any]) -> Any:
    """``apply(y)`` for an element-wise ``apply`` that overwrites its argument. A large numpy ``y``
    whose elements lie contiguously in memory is taken ``IN_PLACE_CHUNK`` elements at a time, so
    that the passes over a chunk and the temporaries ``apply`` makes stay in cache (a full-size
    temporary is also fresh memory to fault in on every run), and shared between the session's
    threads (``chunks``)."""
    if xp is not np or y.size <= IN_PLACE_CHUNK:
        return apply(y)
    flat = xp.ravel(y, order="K")
    if not xp.may_share_memory(flat, y):
        return apply(y)  # strided: no flat view to cut
    pieces(xp, flat.size, IN_PLACE_CHUNK, lambda start, end: apply(flat[start:end]))
    return y


def pieces(xp: Any, size: int, piece: int, work: Callable[[int, int], Any], align: int = SHARD_ALIGN) -> None:
    """``work(start, end)`` over consecutive ranges of at most ``piece`` elements (cache-sized
    work), the ranges of one shard (``chunks``) taken by one thread in order."""

    def span(first: int, last: int) -> None:
        for start in range(first, last, piece):
            work(start, min(start + piece, last))

    chunks(xp, size, span, align)


def _shard_count(xp: Any, size: int, align: int) -> int:
    """How many shards ``size`` elements of element-wise work take in the running session (under 2:
    run it whole)."""
    pool = threads.current()
    if pool is None or xp is not np:
        return 0
    return min(pool.threads * SHARDS_PER_THREAD, size // max(align, SHARD_ELEMENTS))

