"""Tensor sequences (Python lists of arrays): construction, editing, splitting, concatenation, map.

Sequence values are never edited in place: every operator that changes a sequence returns a
new list, since its input list may be read by other nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op


def _position(position: Any, length: int, allow_end: bool) -> int:
    """A position input as a non-negative index; ``allow_end`` admits ``length`` (insert at the back)."""
    value = int(position.item())
    upper = length if allow_end else length - 1
    if not -length <= value <= upper:
        raise IndexError(f"position {value} is out of range [{-length}, {upper}] for a sequence of {length}")
    return value + length if value < 0 else value


@op("SequenceEmpty", 11)
def sequence_empty(ctx: NodeContext, xp: Any):
    """An empty sequence of ``dtype`` tensors (default float)."""
    dtype = ctx.attr("dtype", ir.DataType.FLOAT.value)
    try:
        ir.DataType(dtype).numpy()
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ctx.error(f"unsupported dtype {dtype}: {exc}") from exc

    def run():
        return []

    return run


@op("SequenceConstruct", 11)
def sequence_construct(ctx: NodeContext, xp: Any):
    """A sequence holding the inputs, in order."""

    def run(*tensors):
        return list(tensors)

    return run


@op("SequenceInsert", 11)
def sequence_insert(ctx: NodeContext, xp: Any):
    """The sequence with ``tensor`` inserted before ``position`` (negative counts from the back;
    appended when no position is given)."""

    def run(sequence, tensor, position=None):
        result = list(sequence)
        if position is None:
            result.append(tensor)
        else:
            result.insert(_position(position, len(sequence), allow_end=True), tensor)
        return result

    return run


@op("SequenceAt", 11)
def sequence_at(ctx: NodeContext, xp: Any):
    """The tensor at ``position`` (negative counts from the back)."""

    def run(sequence, position):
        return sequence[_position(position, len(sequence), allow_end=False)]

    return run


@op("SequenceErase", 11)
def sequence_erase(ctx: NodeContext, xp: Any):
    """The sequence without the tensor at ``position`` (default: the last one)."""

    def run(sequence, position=None):
        if position is None:
            if not sequence:
                raise IndexError("cannot erase from an empty sequence")
            return list(sequence[:-1])
        index = _position(position, len(sequence), allow_end=False)
        return list(sequence[:index]) + list(sequence[index + 1:])

    return run


@op("SequenceLength", 11)
def sequence_length(ctx: NodeContext, xp: Any):
    """The number of tensors in the sequence, as an int64 scalar."""

    def run(sequence):
        return xp.asarray(len(sequence), dtype=np.int64)

    return run


@op("SplitToSequence", 11)
def split_to_sequence(ctx: NodeContext, xp: Any):
    """Split along ``axis`` into a sequence: chunks of a scalar ``split`` (the last may be
    shorter), the sizes of a 1-D ``split``, or without ``split`` single slices, squeezed unless
    ``keepdims``."""
    axis = ctx.attr("axis", 0)
    keepdims = bool(ctx.attr("keepdims", 1))

    def run(x, split=None):
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        dim = x.shape[axis]
        if split is None:
            parts = xp.split(x, dim, axis=axis) if dim else []
            return parts if keepdims else [xp.squeeze(p, axis=axis) for p in parts]
        if split.ndim == 0:
            size = int(split)
            if size <= 0:
                raise ValueError(f"split must be positive, got {size}")
            cuts = list(range(size, dim, size))
        elif split.ndim == 1:
            sizes = split.tolist()
            if any(s < 0 for s in sizes) or sum(sizes) != dim:
                raise ValueError(f"split sizes {sizes} do not add up to dim {dim} of axis {axis}")
            cuts = np.cumsum(sizes[:-1]).tolist()
        else:
            raise ValueError(f"split must be a scalar or 1-D, got rank {split.ndim}")
        return xp.split(x, cuts, axis=axis)

    return run


@op("ConcatFromSequence", 11)
def concat_from_sequence(ctx: NodeContext, xp: Any):
    """Concatenate the sequence's tensors along ``axis``, or stack them along a new ``axis``
    when ``new_axis`` is 1."""
    axis = ctx.attr("axis")
    new_axis = ctx.attr("new_axis", 0)
    if new_axis not in (0, 1):
        raise ctx.error(f"new_axis must be 0 or 1, got {new_axis}")

    def run(sequence):
        if not sequence:
            raise ValueError("cannot concatenate an empty sequence")
        rank = sequence[0].ndim + new_axis
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        if new_axis:
            return xp.stack(sequence, axis=axis)
        return xp.concatenate(sequence, axis=axis)

    return run


@op("SequenceMap", 17)
def sequence_map(ctx: NodeContext, xp: Any):
    """Apply ``body`` to each position of the input sequences (tensor inputs are passed whole);
    each output is the sequence of the body's results."""
    graph = ctx.attr("body")
    if not isinstance(graph, ir.Graph):
        raise ctx.error("attribute 'body' is not a graph")
    explicit = ctx.num_inputs
    if len(graph.inputs) != explicit:
        raise ctx.error(f"body has {len(graph.inputs)} inputs, the node {explicit}")
    if len(graph.outputs) < ctx.num_outputs:
        raise ctx.error(f"body has {len(graph.outputs)} outputs, the node {ctx.num_outputs}")
    body = ctx.subgraph("body")
    output_count = len(graph.outputs)

    def run(*args):
        inputs, outer = args[:explicit], args[explicit:]
        length = len(inputs[0])
        is_sequence = [isinstance(v, list) for v in inputs]
        if any(seq and len(v) != length for seq, v in zip(is_sequence, inputs)):
            raise ValueError(f"input sequences differ in length: {[len(v) for v in inputs if isinstance(v, list)]}")
        results: list[list] = [[] for _ in range(output_count)]
        for i in range(length):
            outs = body([v[i] if seq else v for seq, v in zip(is_sequence, inputs)], outer)
            for values, value in zip(results, outs):
                values.append(value)
        return tuple(results)

    return run
