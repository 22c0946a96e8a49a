"""MatMul and Gemm on one tiled GEMM kernel, which Conv reuses.

The kernel computes ``out[b] = alpha · A[b] @ B[b] (+ beta · C[b])`` for a batch of matrices.
Operands are addressed through strides (so transposed and broadcast operands cost nothing) and
batch offsets come from a geometry struct of batch dims with per-operand strides (0 where an
operand is broadcast). Each work-group of 64 work-items computes a 16×64 block of the output:
every step along K stages a 16×16 tile of A and a 16×64 tile of B in local memory, and each
work-item accumulates one column of the block (16 values) in registers. Consecutive work-items
read consecutive columns of B, which GPUs coalesce and CPU OpenCL compilers (PoCL) vectorize
across work-items. Tiles are zero-filled past the matrix edges, so any M, N and K work.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import (
    MAX_RANK,
    all_of,
    broadcast_shape,
    broadcast_strides,
    collapse,
    contiguous_strides,
    floats,
    op,
    pack,
    same_types,
    source,
)

#: Work-items per group (a row of 64), rows each work-item accumulates, and the K step.
_GROUP = 64
_ROWS = 16
_DEPTH = 16

_BODY = f"""
#define WG {_GROUP}
#define RM {_ROWS}
#define TK {_DEPTH}
#define TM RM
#define TN WG

typedef struct {{
    int rank; int dims[{MAX_RANK}]; int a[{MAX_RANK}]; int b[{MAX_RANK}]; int c[{MAX_RANK}];
}} batches;

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gemm(__global T_T* out, __global const T_T* a, __global const T_T* b, __global const T_T* c,
          const int M, const int N, const int K,
          const int a_row, const int a_col, const int b_row, const int b_col, const int c_row, const int c_col,
          const int a_offset, const int b_offset, const int c_offset, const int out_offset,
          const float alpha, const float beta, const int use_c, const batches g) {{
    __local T_CT a_tile[TK][TM];
    __local T_CT b_tile[TK][TN];
    const int lx = get_local_id(0);
    const int n0 = get_group_id(0) * TN, m0 = get_group_id(1) * TM;
    int ao = a_offset, bo = b_offset, co = c_offset, rest = get_global_id(2);
    for (int d = g.rank - 1; d >= 0; --d) {{
        const int k = rest % g.dims[d];
        rest /= g.dims[d];
        ao += k * g.a[d];
        bo += k * g.b[d];
        co += k * g.c[d];
    }}
    const int oo = out_offset + get_global_id(2) * M * N;

    T_CT acc[RM];
    #pragma unroll
    for (int i = 0; i < RM; ++i) acc[i] = 0;

    for (int k0 = 0; k0 < K; k0 += TK) {{
        #pragma unroll
        for (int t = 0; t < TM * TK / WG; ++t) {{
            const int l = t * WG + lx;
            const int r = l / TK, kk = l % TK;
            const int gm = m0 + r, gk = k0 + kk;
            a_tile[kk][r] = (gm < M && gk < K) ? T_LOAD(a, ao + gm * a_row + gk * a_col) : (T_CT)0;
        }}
        #pragma unroll
        for (int kk = 0; kk < TK; ++kk) {{
            const int gk = k0 + kk, gn = n0 + lx;
            b_tile[kk][lx] = (gk < K && gn < N) ? T_LOAD(b, bo + gk * b_row + gn * b_col) : (T_CT)0;
        }}
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int kk = 0; kk < TK; ++kk) {{
            const T_CT bv = b_tile[kk][lx];
            #pragma unroll
            for (int i = 0; i < RM; ++i) acc[i] = fma(a_tile[kk][i], bv, acc[i]);
        }}
        barrier(CLK_LOCAL_MEM_FENCE);
    }}

    const int n = n0 + lx;
    if (n >= N) return;
    #pragma unroll
    for (int i = 0; i < RM; ++i) {{
        const int m = m0 + i;
        if (m < M) {{
            T_CT v = (T_CT)alpha * acc[i];
            if (use_c) v += (T_CT)beta * T_LOAD(c, co + m * c_row + n * c_col);
            T_STORE(out, oo + m * N + n, v);
        }}
    }}
}}
"""


class Gemm:
    """The batched GEMM kernel of one dtype."""

    def __init__(self, xp: Any, dtype: np.dtype) -> None:
        self._kernel = xp.kernel(source({"T": dtype}, _BODY), "gemm")

    def __call__(
        self,
        out: Any,
        a: Any,
        b: Any,
        m: int,
        n: int,
        k: int,
        a_strides: tuple[int, int],
        b_strides: tuple[int, int],
        batch: Sequence[int] = (),
        a_batch: Sequence[int] = (),
        b_batch: Sequence[int] = (),
        c: Any = None,
        c_strides: tuple[int, int] = (0, 0),
        c_batch: Sequence[int] = (),
        alpha: float = 1.0,
        beta: float = 1.0,
        offsets: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> None:
        """Enqueue the products: batch ``i`` (row-major over ``batch``) writes the contiguous
        M×N matrix at element ``offsets[3] + i·M·N`` of ``out``.

        Strides are in elements: ``a_strides`` = (step along M, step along K), ``b_strides`` =
        (along K, along N), ``c_strides`` = (along M, along N); ``*_batch`` give each batch
        dim's step per operand. ``offsets`` are the element offsets of a, b, c and out.
        """
        count = math.prod(batch)
        if m == 0 or n == 0 or count == 0:
            return
        c_batch = c_batch or (0,) * len(batch)
        out_batch = contiguous_strides((*batch, m * n))[:-1] if batch else ()
        dims, (a_b, b_b, c_b, _) = collapse(batch, [a_batch, b_batch, c_batch, out_batch]) if batch else ([1], [[0]] * 4)
        geometry = pack(len(dims), dims, a_b, b_b, c_b)
        grid = (-(-n // _GROUP) * _GROUP, -(-m // _ROWS), count)
        self._kernel(
            grid, (_GROUP, 1, 1), out, a, b, c if c is not None else out, m, n, k, *a_strides, *b_strides, *c_strides,
            *offsets, float(alpha), float(beta), int(c is not None), geometry,
        )


def _matmul_shapes(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, int, int, tuple[int, ...], tuple[int, ...]]:
    """M, N, K, the broadcast batch shape and the output shape of numpy's matmul."""
    if not a_shape or not b_shape:
        raise ValueError("MatMul operands must have at least one dim")
    a2 = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b2 = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    m, k = a2[-2:]
    k2, n = b2[-2:]
    if k != k2:
        raise ValueError(f"MatMul shapes {a_shape} and {b_shape} do not match")
    batch = broadcast_shape(a2[:-2], b2[:-2])
    out = batch + ((m,) if len(a_shape) > 1 else ()) + ((n,) if len(b_shape) > 1 else ())
    return m, n, k, batch, out


@op("MatMul", 1, supports=all_of(floats, same_types()))
def matmul(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """numpy's matmul: 1-D operands promoted, leading dims broadcast."""
    gemm = Gemm(xp, np.dtype(ctx.inputs[0].dtype))

    def run(a: Any, b: Any) -> Any:
        m, n, k, batch, out_shape = _matmul_shapes(a.shape, b.shape)
        out = xp.empty(out_shape, a.dtype)
        a_batch_shape = a.shape[:-2] if a.ndim > 2 else ()
        b_batch_shape = b.shape[:-2] if b.ndim > 2 else ()
        a_batch = [s * m * k for s in broadcast_strides(a_batch_shape, batch)]
        b_batch = [s * k * n for s in broadcast_strides(b_batch_shape, batch)]
        gemm(out, a, b, m, n, k, (k, 1), (n, 1), batch, a_batch, b_batch)
        return out

    return run


@op("Gemm", 7, supports=all_of(floats, same_types()))  # before 7, C broadcasts only when told: CPU
def gemm_op(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """``alpha · op(A) @ op(B) + beta · C``: transposes as strides, C broadcast to (M, N)."""
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    trans_a = bool(ctx.attr("transA", 0))
    trans_b = bool(ctx.attr("transB", 0))
    gemm = Gemm(xp, np.dtype(ctx.inputs[0].dtype))

    def run(a: Any, b: Any, c: Any = None) -> Any:
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"Gemm needs 2-D inputs, got {a.shape} and {b.shape}")
        m, k = a.shape[::-1] if trans_a else a.shape
        k2, n = b.shape[::-1] if trans_b else b.shape
        if k != k2:
            raise ValueError(f"Gemm shapes {a.shape} and {b.shape} do not match")
        out = xp.empty((m, n), a.dtype)
        a_strides = (1, m) if trans_a else (k, 1)
        b_strides = (1, k) if trans_b else (n, 1)
        if c is None or beta == 0:
            gemm(out, a, b, m, n, k, a_strides, b_strides, alpha=alpha)
        else:
            if c.ndim > 2 or broadcast_shape(c.shape, (m, n)) != (m, n):
                raise ValueError(f"C of shape {c.shape} does not broadcast to ({m}, {n})")
            c_strides = tuple(broadcast_strides(c.shape, (m, n)))
            gemm(out, a, b, m, n, k, a_strides, b_strides, c=c, c_strides=c_strides, alpha=alpha, beta=beta)
        return out

    return run
