"""Convolutions that skip im2col: depthwise ones as a sum over kernel taps, 1x1 ones as one GEMM.

im2col copies every input pixel once per kernel tap into a column matrix and then runs one
small GEMM per group; with one input channel per group (depthwise, as in MobileNet and
EfficientNet) that GEMM has a single row of work, so building the matrix is all the cost.
Here each tap instead multiplies a strided view of the padded input by that tap's weights,
one channel-wise scale, and adds it to the output. A 1x1 convolution needs no windows at all:
the (strided) input is already the column matrix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxmux.providers.cpu.ops.reduce import accumulation_dtype

#: Output elements per channel block of a depthwise convolution (two float32 blocks fit in L2).
_BLOCK_ELEMENTS = 1 << 17


def depthwise(xp: Any, x: Any, w: Any, layout: Any) -> Any:
    """Convolution with one input channel per group: x (N, C, ...), w (C·k, 1, kernel...), k ≥ 1.

    Output channel m reads input channel m // k. Returns a new (N, C·k, out...) array in the
    input's accumulation dtype (float32 for narrower floats).

    The padded input is split into its stride phases (for stride s along an axis, the s
    interleaved sub-grids), each a contiguous array; a tap then reads one phase at a fixed flat
    offset, so every tap is one long contiguous multiply-add over all output positions. The
    output is computed on the phases' full row width and the extra columns cropped at the end.
    """
    work = accumulation_dtype(x.dtype)
    n, channels = x.shape[:2]
    m = w.shape[0]
    spans = [((k - 1) * d) // s for k, d, s in zip(layout.kernel, layout.dilations, layout.strides)]
    lengths = [o + q for o, q in zip(layout.out, spans)]
    lengths[0] += 1  # room for the shifts along the later axes
    source = xp.zeros((n, channels, *(size * s for size, s in zip(lengths, layout.strides))), dtype=work)
    fits = [min(size, size_s - b) for size, size_s, b in zip(x.shape[2:], source.shape[2:], layout.begin)]
    source[(..., *(slice(b, b + f) for b, f in zip(layout.begin, fits)))] = x[
        (..., *(slice(0, f) for f in fits))
    ]
    phases: dict[tuple[int, ...], Any] = {}

    def phase(residue: tuple[int, ...]) -> Any:
        if residue not in phases:
            grid = source[(..., *(slice(r, None, s) for r, s in zip(residue, layout.strides)))]
            if m != channels:
                grid = xp.repeat(grid, m // channels, axis=1)
            phases[residue] = xp.ascontiguousarray(grid).reshape(n, m, -1)
        return phases[residue]

    flat = [math.prod(lengths[a + 1 :]) for a in range(len(lengths))]
    size = layout.out[0] * flat[0]
    taps = w.astype(work, copy=False).reshape(m, -1)
    y = xp.empty((n, m, size), dtype=work)
    term = xp.empty_like(y)
    reads = []
    for offset in np.ndindex(*layout.kernel):
        reach = [i * d for i, d in zip(offset, layout.dilations)]
        residue = tuple(r % s for r, s in zip(reach, layout.strides))
        reads.append((phase(residue), sum(r // s * f for r, s, f in zip(reach, layout.strides, flat))))
    # A block of channels at a time keeps the accumulator and the term in cache across taps.
    block = max(1, _BLOCK_ELEMENTS // (n * size))
    for c in range(0, m, block):
        channels_out, term_out = y[:, c : c + block], term[:, c : c + block]
        for k, (source_phase, shift) in enumerate(reads):
            view = source_phase[:, c : c + block, shift : shift + size]
            scale = taps[c : c + block, k].reshape(-1, 1)
            if k == 0:
                xp.multiply(view, scale, out=channels_out)
            else:
                xp.multiply(view, scale, out=term_out)
                channels_out += term_out
    y = y.reshape(n, m, layout.out[0], *lengths[1:])
    return xp.ascontiguousarray(y[(..., *(slice(0, o) for o in layout.out[1:]))])


def pointwise(xp: Any, x: Any, w: Any, layout: Any) -> Any:
    """A 1x1, unpadded, ungrouped convolution (any strides) as one GEMM per image: (M, C) @ (C, P)."""
    work = accumulation_dtype(x.dtype)
    if any(s != 1 for s in layout.strides):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in layout.strides))]
    n, c = x.shape[:2]
    cols = x.astype(work, copy=False).reshape(n, c, math.prod(layout.out))
    y = xp.matmul(w.astype(work, copy=False).reshape(w.shape[0], c), cols)
    return y.reshape(n, w.shape[0], *layout.out)
