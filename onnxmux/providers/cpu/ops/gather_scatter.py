"""Index-driven reads and writes: Gather*, Scatter*, TensorScatter, Compress, OneHot."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxmux.providers.cpu.registry import op

def _axis(axis: int, rank: int) -> int:
    """``axis`` counted from the front; raises when outside [-rank, rank-1]."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _wrap(xp: Any, indices: Any, dim: Any) -> Any:
    """Indices with negative values counted from the back of a dim of size ``dim``.

    ``dim`` may be an array broadcasting against ``indices`` (one size per index position).
    Raises when an index is out of range.
    """
    indices = indices.astype(np.int64, copy=False)
    wrapped = xp.where(indices < 0, indices + dim, indices)
    if wrapped.size and bool(((wrapped < 0) | (wrapped >= dim)).any()):
        raise IndexError("index out of range of the indexed dimension")
    return wrapped


def _scatter(data: Any, index: tuple, updates: Any, reducer: Any) -> Any:
    """A copy of ``data`` with ``updates`` written at the advanced ``index``, or combined with
    what is there by the ufunc ``reducer`` (which accumulates repeated indices)."""
    out = data.copy()
    if reducer is None:
        out[index] = updates
    else:
        reducer.at(out, index, updates)
    return out


def _reducer(ctx, xp) -> Any:
    """The ufunc of the ``reduction`` attribute (None for "none": plain overwrite)."""
    reduction = ctx.attr("reduction", "none")
    ufuncs = {"none": None, "add": xp.add, "mul": xp.multiply, "max": xp.maximum, "min": xp.minimum}
    if reduction not in ufuncs:
        raise ctx.error(f"unknown reduction '{reduction}'")
    return ufuncs[reduction]


def _element_index(xp: Any, indices: Any, axis: int) -> tuple:
    """The advanced index of ScatterElements/GatherElements: ``indices`` on ``axis``, position elsewhere."""
    grid = xp.ogrid[tuple(slice(0, d) for d in indices.shape)]
    return tuple(indices if d == axis else grid[d] for d in range(indices.ndim))


@op("Gather", 1)
def gather(ctx, xp):
    """Take the entries of ``axis`` named by ``indices`` (output rank q + r - 1)."""
    axis = ctx.attr("axis", 0)

    def run(data, indices):
        a = _axis(axis, data.ndim)
        return xp.take(data, _wrap(xp, indices, data.shape[a]), axis=a)

    return run


@op("GatherElements", 11)
def gather_elements(ctx, xp):
    """out[i][j][k] = data[i][indices[i][j][k]][k] for axis 1 (likewise for other axes)."""
    axis = ctx.attr("axis", 0)

    def run(data, indices):
        a = _axis(axis, data.ndim)
        return data[_element_index(xp, _wrap(xp, indices, data.shape[a]), a)]

    return run


def _nd_index(xp: Any, data: Any, indices: Any, batch_dims: int) -> tuple[tuple, tuple[int, ...]]:
    """GatherND/ScatterND addressing: the advanced index into ``data`` viewed as [batch, *rest]
    with ``indices`` viewed as [batch, n, k], and the shape of the index tuples' grid."""
    k = indices.shape[-1]
    if not 1 <= k <= data.ndim - batch_dims:
        raise ValueError(f"indices.shape[-1] = {k} must be in [1, {data.ndim - batch_dims}]")
    batch = math.prod(data.shape[:batch_dims])
    tuples = xp.reshape(indices, (batch, -1, k))
    dims = xp.asarray(data.shape[batch_dims : batch_dims + k], dtype=np.int64)
    tuples = _wrap(xp, tuples, dims)
    rows = xp.arange(batch).reshape(batch, 1)
    return (rows, *(tuples[..., j] for j in range(k))), indices.shape[:-1]


@op("GatherND", 11, 12)
def gather_nd(ctx, xp):
    """Gather the slices of ``data`` addressed by the index tuples in the last dim of ``indices``."""
    batch_dims = ctx.attr("batch_dims", 0)
    if batch_dims < 0:
        raise ctx.error(f"batch_dims must be non-negative, got {batch_dims}")

    def run(data, indices):
        if batch_dims >= min(data.ndim, indices.ndim) or indices.shape[:batch_dims] != data.shape[:batch_dims]:
            raise ValueError(f"data {data.shape} and indices {indices.shape} do not share {batch_dims} batch dims")
        index, grid = _nd_index(xp, data, indices, batch_dims)
        batched = xp.reshape(data, (-1, *data.shape[batch_dims:]))
        k = indices.shape[-1]
        return xp.reshape(batched[index], grid + data.shape[batch_dims + k :])

    return run


@op("ScatterND", 11, 16, 18)
def scatter_nd(ctx, xp):
    """Copy ``data`` and write (or reduce, opset 16+) ``updates`` at the index tuples of ``indices``."""
    reducer = _reducer(ctx, xp)

    def run(data, indices, updates):
        index, _ = _nd_index(xp, data, indices, 0)
        expected = indices.shape[:-1] + data.shape[indices.shape[-1] :]
        if updates.shape != expected:
            raise ValueError(f"updates have shape {updates.shape}, expected {expected}")
        slices = xp.reshape(updates, (1, -1, *data.shape[indices.shape[-1] :]))
        return xp.reshape(_scatter(data[None], index, slices, reducer), data.shape)

    return run


@op("Scatter", 9)
@op("ScatterElements", 11, 16, 18)
def scatter_elements(ctx, xp):
    """Copy ``data`` and write (or reduce, opset 16+) each update at its index along ``axis``."""
    axis = ctx.attr("axis", 0)
    reducer = _reducer(ctx, xp)

    def run(data, indices, updates):
        a = _axis(axis, data.ndim)
        index = _element_index(xp, _wrap(xp, indices, data.shape[a]), a)
        return _scatter(data, index, updates, reducer)

    return run


@op("TensorScatter", 24)
def tensor_scatter(ctx, xp):
    """Write ``update`` into a copy of the cache along ``axis`` from each batch's write index."""
    axis = ctx.attr("axis", -2)
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise ctx.error(f"unknown mode '{mode}'")

    def run(past_cache, update, write_indices=None):
        a = _axis(axis, past_cache.ndim)
        if a == 0:
            raise ValueError("axis cannot be the batch dimension")
        batch, capacity, length = past_cache.shape[0], past_cache.shape[a], update.shape[a]
        starts = xp.zeros(batch, np.int64) if write_indices is None else write_indices.astype(np.int64)
        positions = starts.reshape(batch, 1) + xp.arange(length)
        if mode == "circular":
            positions = positions % capacity
        elif bool((positions >= capacity).any()):
            raise IndexError("write_indices + sequence_length exceeds the cache length")
        present = past_cache.copy()
        rows = xp.arange(batch).reshape(batch, 1)
        # Moving the sequence axis next to the batch axis lines up the cache view with the update.
        xp.moveaxis(present, a, 1)[rows, positions] = xp.moveaxis(update, a, 1)
        return present

    return run


@op("Compress", 9)
def compress(ctx, xp):
    """Keep the slices along ``axis`` (of the flattened input by default) where ``condition`` holds."""
    axis = ctx.attr("axis", None)

    def run(x, condition):
        keep = condition.astype(bool).reshape(-1)
        if axis is None:
            return xp.compress(keep, x.reshape(-1))
        return xp.compress(keep, x, axis=_axis(axis, x.ndim))

    return run


@op("OneHot", 9)
def one_hot(ctx, xp):
    """values[1] where the new ``axis`` position equals the index (negatives count back), else values[0]."""
    axis = ctx.attr("axis", -1)

    def run(indices, depth, values):
        size = int(depth.reshape(-1)[0])
        where = axis + indices.ndim + 1 if axis < 0 else axis
        if not 0 <= where <= indices.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {indices.ndim + 1}")
        positions = indices.astype(np.int64)
        positions = xp.where(positions < 0, positions + size, positions)
        classes = xp.arange(size).reshape((size,) + (1,) * (indices.ndim - where))
        hot = xp.expand_dims(positions, where) == classes
        off, on = values.reshape(-1)[0], values.reshape(-1)[1]
        return xp.where(hot, on, off)

    return run
