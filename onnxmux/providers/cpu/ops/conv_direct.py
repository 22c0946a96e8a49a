"""Depthwise and 1x1 convolutions without the generic im2col.

The generic path (``conv.py``) builds the column matrix from a 2·rank-dimensional strided
window view, then runs one GEMM per group; with one input channel per group that GEMM has a
single row of work, so building the matrix is all the cost. Here the zero-padded input is split
once into its stride phases (for stride s along an axis, the s interleaved sub-grids), each a
contiguous array; every kernel tap then reads one phase at a fixed flat offset, a contiguous
slice. Outputs are computed on the phases' full row width and the extra columns cropped.

* Depthwise (one input channel per group, as in MobileNet and EfficientNet): the output is a
  sum over taps of slice times that tap's per-channel weight, with no GEMM at all.
* 1x1 unpadded: the (strided) input already is the column matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxmux.providers.cpu.ops.reduce import accumulation_dtype

#: Output elements per block of a depthwise convolution (two float32 blocks fit in L2).
_BLOCK_ELEMENTS = 1 << 17


@dataclass
class _Phases:
    """The padded input's stride phases and, per kernel tap, which phase and offset it reads.

    ``size`` is the number of positions per channel of the output grid (full phase rows);
    ``taps`` holds (residue, flat offset) per tap in kernel order.
    """

    lengths: list[int]
    size: int
    taps: list[tuple[tuple[int, ...], int]]
    grid: Callable[[tuple[int, ...]], Any]

    def crop(self, xp: Any, y: Any, out: tuple[int, ...]) -> Any:
        """(N, M, size) on the full grid -> a contiguous (N, M, out...)."""
        y = y.reshape(*y.shape[:2], out[0], *self.lengths[1:])
        return xp.ascontiguousarray(y[(..., *(slice(0, o) for o in out[1:]))])


def _phases(xp: Any, x: Any, layout: Any, work: Any) -> _Phases:
    """Pad ``x`` (N, C, spatial...) into a zero grid and describe its stride phases and taps."""
    n, channels = x.shape[:2]
    spans = [((k - 1) * d) // s for k, d, s in zip(layout.kernel, layout.dilations, layout.strides)]
    lengths = [o + q for o, q in zip(layout.out, spans)]
    lengths[0] += 1  # room for the shifts along the later axes
    source = xp.zeros((n, channels, *(length * s for length, s in zip(lengths, layout.strides))), dtype=work)
    fits = [min(have, room - b) for have, room, b in zip(x.shape[2:], source.shape[2:], layout.begin)]
    source[(..., *(slice(b, b + f) for b, f in zip(layout.begin, fits)))] = x[(..., *(slice(0, f) for f in fits))]
    flat = [math.prod(lengths[a + 1 :]) for a in range(len(lengths))]
    taps = []
    for offset in np.ndindex(*layout.kernel):
        reach = [i * d for i, d in zip(offset, layout.dilations)]
        residue = tuple(r % s for r, s in zip(reach, layout.strides))
        taps.append((residue, sum(r // s * f for r, s, f in zip(reach, layout.strides, flat))))

    def grid(residue: tuple[int, ...]) -> Any:
        return source[(..., *(slice(r, None, s) for r, s in zip(residue, layout.strides)))]

    return _Phases(lengths, layout.out[0] * flat[0], taps, grid)


def depthwise(xp: Any, x: Any, w: Any, layout: Any) -> Any:
    """Convolution with one input channel per group: x (N, C, ...), w (C·k, 1, kernel...), k ≥ 1.

    Output channel m reads input channel m // k. Returns a new (N, C·k, out...) array in the
    input's accumulation dtype (float32 for narrower floats). With more channels than
    positions the phases are laid out channels last, so the inner loops run along the longer axis.
    """
    work = accumulation_dtype(x.dtype)
    n, channels = x.shape[:2]
    m = w.shape[0]
    phases = _phases(xp, x, layout, work)
    size = phases.size
    channels_last = m > size
    stored: dict[tuple[int, ...], Any] = {}

    def phase(residue: tuple[int, ...]) -> Any:
        if residue not in stored:
            grid = phases.grid(residue)
            if m != channels:
                grid = xp.repeat(grid, m // channels, axis=1)
            if channels_last:
                stored[residue] = xp.ascontiguousarray(xp.moveaxis(grid, 1, -1)).reshape(n, -1, m)
            else:
                stored[residue] = xp.ascontiguousarray(grid).reshape(n, m, -1)
        return stored[residue]

    weights = w.astype(work, copy=False).reshape(m, -1)
    reads = [(phase(residue), shift, weights[:, k]) for k, (residue, shift) in enumerate(phases.taps)]
    y = _sum_of_taps(xp, reads, n, m, size, channels_last, work)
    if channels_last:
        y = xp.moveaxis(y, -1, 1)
    return phases.crop(xp, y, layout.out)


def _sum_of_taps(xp: Any, reads: list, n: int, m: int, size: int, channels_last: bool, work: Any) -> Any:
    """Σ_taps weights · phase[shift : shift + size] as (N, M, size), or (N, size, M) channels last.

    It goes a block of channels (or of positions, channels last) at a time, so that the
    accumulator and the term stay in cache across the taps.
    """
    shape = (n, size, m) if channels_last else (n, m, size)
    y = xp.empty(shape, dtype=work)
    term = xp.empty_like(y)
    block = max(1, _BLOCK_ELEMENTS // (n * (m if channels_last else size)))
    for b in range(0, size if channels_last else m, block):
        y_block, term_block = y[:, b : b + block], term[:, b : b + block]
        for k, (source, shift, weights) in enumerate(reads):
            if channels_last:
                stop = shift + min(b + block, size)
                view, scale = source[:, shift + b : stop], weights
            else:
                view, scale = source[:, b : b + block, shift : shift + size], weights[b : b + block, None]
            if k == 0:
                xp.multiply(view, scale, out=y_block)
            else:
                xp.multiply(view, scale, out=term_block)
                y_block += term_block
    return y


def pointwise(xp: Any, x: Any, w: Any, layout: Any) -> Any:
    """A 1x1, unpadded, ungrouped convolution (any strides) as one GEMM per image: (M, C) @ (C, P)."""
    work = accumulation_dtype(x.dtype)
    if any(s != 1 for s in layout.strides):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in layout.strides))]
    n, c = x.shape[:2]
    cols = x.astype(work, copy=False).reshape(n, c, math.prod(layout.out))
    y = xp.matmul(w.astype(work, copy=False).reshape(w.shape[0], c), cols)
    return y.reshape(n, w.shape[0], *layout.out)
