"""Depthwise and 1x1 convolutions without the generic im2col.

The generic path (``conv.py``) builds the column matrix from a 2·rank-dimensional strided
window view, then runs one GEMM per group; with one input channel per group that GEMM has a
single row of work, so building the matrix is all the cost. Here:

* Depthwise (one input channel per group, as in MobileNet and EfficientNet): the zero-padded
  input is split into its stride phases (for stride s along an axis, the s interleaved
  sub-grids), each one contiguous array in which every kernel tap reads a contiguous run of
  positions at a fixed flat offset. The taps that read one phase lie on a regular grid of
  offsets, so a single strided view (taps..., positions) holds all their reads. On small
  images one ``einsum`` per phase (channels last) multiplies them by their weights and sums
  them in one pass; on larger ones the reads of a block of channels are copied into one
  buffer and each channel's taps summed by a BLAS product. Outputs are computed on the
  phases' full row width and the extra columns cropped.
* 1x1 unpadded: the (strided) input already is the column matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops.reduce import accumulation_dtype

#: Length einsum's inner loop aims at when channels are last (weights repeated over rows).
_INNER_ELEMENTS = 4096
#: Elements of the taps' reads copied per block of channels when channels are first (1 MB of float32).
_BLOCK_ELEMENTS = 1 << 18
#: Output positions per channel up to which the phases are laid out channels last; on larger
#: images transposing the input and output costs more than the single-pass einsum saves
#: (measured on MobileNetV3 and EfficientNet).
_CHANNELS_LAST_UP_TO = 1024
_AXES = "abcdefgh"
#: Weight layouts kept per node for constant weights (more than one only with dynamic shapes).
_KEPT_LAYOUTS = 16


@dataclass(frozen=True)
class _TapGroup:
    """The kernel taps that read one stride phase: a regular grid along each axis.

    ``kernel`` selects their weights (``counts`` of them along each axis), ``start`` is the flat
    offset of the first tap's read in the phase and ``steps`` the flat offset between
    neighbouring taps along each axis.
    """

    residue: tuple[int, ...]
    kernel: tuple[slice, ...]
    counts: tuple[int, ...]
    start: int
    steps: tuple[int, ...]


@dataclass(frozen=True)
class _Geometry:
    """Phase sizes for one depthwise layout: ``lengths`` per phase axis, flat ``size`` of the
    output grid (full phase rows, ``rows`` of it computed) and the tap groups."""

    lengths: tuple[int, ...]
    size: int
    rows: int
    groups: tuple[_TapGroup, ...]


@lru_cache(maxsize=256)
def _geometry(layout: Any, row_multiple: int) -> _Geometry:
    """Phase lengths with room for every tap's read of ``size`` rounded up to ``row_multiple``
    (cached: a network asks for the same few layouts on every run)."""
    strides, dilations, kernel = layout.strides, layout.dilations, layout.kernel
    spans = [((k - 1) * d) // s for k, d, s in zip(kernel, dilations, strides)]
    lengths = [o + q for o, q in zip(layout.out, spans)]
    flat = [math.prod(lengths[a + 1 :]) for a in range(len(lengths))]
    size = layout.out[0] * flat[0]
    rows = -(-size // row_multiple) * row_multiple
    reach = sum(q * f for q, f in zip(spans, flat))
    lengths[0] = max(lengths[0], -(-(reach + rows) // flat[0]))
    groups = []
    for residue in np.ndindex(*strides):
        taps = [[i for i in range(k) if (i * d) % s == r] for k, d, s, r in zip(kernel, dilations, strides, residue)]
        if not all(taps):
            continue
        offsets = [[(i * d) // s for i in t] for t, d, s in zip(taps, dilations, strides)]
        groups.append(
            _TapGroup(
                residue,
                tuple(slice(t[0], t[-1] + 1, t[1] - t[0] if len(t) > 1 else 1) for t in taps),
                tuple(len(t) for t in taps),
                sum(o[0] * f for o, f in zip(offsets, flat)),
                tuple((o[1] - o[0] if len(o) > 1 else 0) * f for o, f in zip(offsets, flat)),
            )
        )
    return _Geometry(tuple(lengths), size, rows, tuple(groups))


def depthwise(xp: Any, x: Any, w: Any, layout: Any, bias: Any = None, kept: dict | None = None) -> Any:
    """Convolution with one input channel per group: x (N, C, ...), w (C·k, 1, kernel...), k ≥ 1,
    plus the optional per-channel ``bias``, added while the result is copied out.

    Output channel m reads input channel m // k. Returns a new (N, C·k, out...) array in the
    input's accumulation dtype (float32 for narrower floats). On small images (or with more channels
    than positions) the phases are laid out channels last and einsum's inner loop runs along rows
    of channels (their weights repeated to a long row); otherwise by a BLAS product per channel.
    ``kept``, a dict the caller keeps for weights that never change, holds their repeated rows.
    """
    work = accumulation_dtype(x.dtype)
    n, channels = x.shape[:2]
    m = w.shape[0]
    if m != channels:
        x = xp.repeat(x, m // channels, axis=1)
    positions = math.prod(layout.out)
    channels_last = positions <= _CHANNELS_LAST_UP_TO or m > positions
    repeat = max(1, _INNER_ELEMENTS // m) if channels_last else 1
    geometry = _geometry(layout, repeat)
    weights = _weights(xp, w.astype(work, copy=False), layout, geometry, repeat if channels_last else 0, kept)
    phases = [_phase(xp, x, group.residue, layout, geometry.lengths, channels_last, work) for group in geometry.groups]
    if channels_last:
        y = None
        for group, taps, phase in zip(geometry.groups, weights, phases):
            term = _taps_by_einsum(xp, phase.reshape(n, -1), taps, group, geometry.rows, repeat)
            y = term if y is None else xp.add(y, term, out=y)
        y = xp.moveaxis(y.reshape(n, geometry.rows, m)[:, : geometry.size], -1, 1)
    else:
        y = _taps_by_matmul(xp, [phase.reshape(n, m, -1) for phase in phases], weights[0], geometry)[..., : geometry.size]
    y = y.reshape(n, m, layout.out[0], *geometry.lengths[1:])
    y = y[(..., *(slice(0, o) for o in layout.out[1:]))]
    if bias is None:
        return xp.ascontiguousarray(y)
    bias = bias.astype(work, copy=False).reshape(m, *(1,) * len(layout.out))
    return xp.add(y, bias, out=xp.empty(y.shape, dtype=work))


def _weights(xp: Any, w: Any, layout: Any, geometry: _Geometry, repeat: int, kept: dict | None) -> list:
    """Each tap group's weights: (M, taps...) channels first, or channels last their row of
    channels repeated ``repeat`` times, (taps..., repeat·M); looked up in ``kept`` first."""
    key = (layout, repeat, w.dtype)
    if kept is not None and key in kept:
        return kept[key]
    weights = w.reshape(w.shape[0], *layout.kernel)
    groups = [weights[(slice(None), *group.kernel)] for group in geometry.groups]
    if repeat:
        groups = [_repeated_row(xp, taps, repeat) for taps in groups]
    else:
        groups = [xp.concatenate([taps.reshape(taps.shape[0], 1, -1) for taps in groups], axis=2)]
    if kept is not None:
        if len(kept) >= _KEPT_LAYOUTS:
            kept.clear()
        kept[key] = groups
    return groups


def _repeated_row(xp: Any, taps: Any, repeat: int) -> Any:
    """(M, taps...) weights as (taps..., repeat·M): each tap's channel row ``repeat`` times."""
    m = taps.shape[0]
    row = xp.moveaxis(taps, 0, -1)[..., None, :]
    tiled = xp.ascontiguousarray(xp.broadcast_to(row, (*taps.shape[1:], repeat, m)))
    return tiled.reshape(*taps.shape[1:], repeat * m)


def _phase(xp: Any, x: Any, residue: tuple, layout: Any, lengths: tuple, channels_last: bool, dtype: Any) -> Any:
    """Stride phase ``residue`` of the zero-padded input, copied straight from ``x`` into a fresh
    (N, M, lengths...) array, or (N, lengths..., M) channels last; only its borders are zeroed."""
    n, m = x.shape[:2]
    phase = xp.empty((n, *lengths, m) if channels_last else (n, m, *lengths), dtype=dtype)
    first_axis = 1 if channels_last else 2
    into, reads = [], []
    for r, s, b, length, size in zip(residue, layout.strides, layout.begin, lengths, x.shape[2:]):
        # Phase position p holds padded position p·s + r, which is input position p·s + r - b.
        first = min(length, max(0, -((r - b) // s)))
        last = max(first, min(length, (size - 1 - r + b) // s + 1))
        into.append(slice(first, last))
        reads.append(slice(first * s + r - b, (last - 1) * s + r - b + 1, s) if last > first else slice(0, 0))
    for axis, span in enumerate(into):
        lead = (slice(None),) * (first_axis + axis)
        phase[(*lead, slice(0, span.start))] = 0
        phase[(*lead, slice(span.stop, None))] = 0
    values = x[(slice(None), slice(None), *reads)]
    if channels_last:
        phase[(slice(None), *into)] = xp.moveaxis(values, 1, -1)
    else:
        phase[(slice(None), slice(None), *into)] = values
    return phase


def _taps_by_einsum(xp: Any, flat: Any, tiled: Any, group: _TapGroup, rows: int, repeat: int) -> Any:
    """Channels last: one strided view (N, taps..., rows / repeat, repeat·M) holds every tap's
    read, and one einsum multiplies by the weights (``tiled``: repeated over ``repeat`` rows, so
    that its inner loop is long) and sums over the taps in one pass."""
    n, m = flat.shape[0], tiled.shape[-1] // repeat
    item = flat.strides[1]
    reads = xp.lib.stride_tricks.as_strided(
        flat[:, group.start * m :],
        (n, *tiled.shape[:-1], rows // repeat, repeat * m),
        (flat.strides[0], *(s * m * item for s in group.steps), repeat * m * item, item),
    )
    axes = _AXES[: tiled.ndim - 1]
    return xp.einsum(f"n{axes}qr,{axes}r->nqr", reads, tiled)


def _taps_by_matmul(xp: Any, flats: list, weights: Any, geometry: _Geometry) -> Any:
    """Channels first: for a block of channels at a time, every tap's read (from its phase in
    ``flats``, each (N, M, flat positions)) is copied into one (channels, taps, rows) buffer
    that stays in cache, then one stacked product multiplies each channel's (1, taps) row of
    ``weights`` (M, 1, taps) with its (taps, rows) reads. The copy makes each product a plain
    BLAS call, which runs at several times the speed of a multiply and an add per tap.
    Returns (N, M, rows)."""
    n, m = flats[0].shape[:2]
    rows, dtype, item = geometry.rows, flats[0].dtype, flats[0].itemsize
    taps = weights.shape[-1]
    block = max(1, min(m, _BLOCK_ELEMENTS // (taps * rows)))
    reads = xp.empty((block, taps, rows), dtype=dtype)
    y = xp.empty((n, m, 1, rows), dtype=dtype)
    for image in range(n):
        for first in range(0, m, block):
            last = min(m, first + block)
            tap = 0
            for flat, group in zip(flats, geometry.groups):
                size = math.prod(group.counts)
                view = xp.lib.stride_tricks.as_strided(
                    flat[image, first:last, group.start :],
                    (last - first, *group.counts, rows),
                    (flat.strides[1], *(step * item for step in group.steps), item),
                )
                reads[: last - first, tap : tap + size].reshape(last - first, *group.counts, rows)[...] = view
                tap += size
            xp.matmul(weights[first:last], reads[: last - first], out=y[image, first:last])
    return y.reshape(n, m, rows)


def pointwise(xp: Any, x: Any, w: Any, layout: Any) -> Any:
    """A 1x1, unpadded, ungrouped convolution (any strides) as one GEMM per image: (M, C) @ (C, P)."""
    work = accumulation_dtype(x.dtype)
    if any(s != 1 for s in layout.strides):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in layout.strides))]
    n, c = x.shape[:2]
    cols = x.astype(work, copy=False).reshape(n, c, math.prod(layout.out))
    y = sharded.matmul(xp, w.astype(work, copy=False).reshape(w.shape[0], c), cols)
    return y.reshape(n, w.shape[0], *layout.out)
