"""Extended (level 2) rule: Reshape targets assembled from the runtime shape of a tensor become constants.

Older exporters write ``x.view(b, s, heads, size)`` as Shape(x) -> Gather(i) -> Unsqueeze -> Concat
-> Reshape, a handful of small nodes per Reshape run on every call. Where each gathered
dimension is known (a static int) or is the dimension the Reshape's data has at the same
position (the same symbolic name in the inferred shapes, so the Reshape's ``0``, "copy this
dimension", gives it), the target becomes a constant and the chain dead code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxmux.core.optimizer.editing import attr, constant, is_op, make_initializer, opset
from onnxmux.core.optimizer.rules import PatternRule


class ConstantReshapeTarget(PatternRule):
    """Reshape(data, Concat(constants, dims gathered from a Shape)) -> Reshape(data, constant)."""

    name = "ConstantReshapeTarget"
    roots = frozenset({"Reshape"})

    def match(self, node: ir.Node) -> Any | None:
        """The constant target when every part of ``node``'s Concat target resolves, else None."""
        if not is_op(node, "Reshape") or attr(node, "allowzero", 0) != 0 or len(node.inputs) != 2:
            return None
        data, target = node.inputs
        concat = target.producer() if target is not None else None
        if not is_op(concat, "Concat") or data is None or data.shape is None:
            return None
        parts: list[int] = []
        gathered = False  # an all-constant Concat is constant folding's
        for part in concat.inputs:
            array = constant(part)
            if array is not None and array.ndim == 1 and array.dtype == np.int64:
                parts.extend(int(v) for v in array)
                continue
            dim = _gathered_dim(part)
            resolved = _resolve(dim, data, len(parts)) if dim is not None else None
            if resolved is None:
                return None
            parts.append(resolved)
            gathered = True
        return np.array(parts, np.int64) if gathered else None

    def rewrite(self, graph: ir.Graph, node: ir.Node, target: Any) -> None:
        """Read the constant target instead (the Concat chain is left to dead-code elimination)."""
        node.replace_input_with(1, make_initializer(graph, target, f"{node.name}_shape"))


def _gathered_dim(part: ir.Value | None) -> tuple[ir.Value, int] | None:
    """(x, i) when ``part`` is the 1-element tensor holding ``x.shape[i]``: Unsqueeze(Gather(Shape(x), i))
    with a scalar index, or Gather(Shape(x), [i])."""
    node = part.producer() if part is not None else None
    if is_op(node, "Unsqueeze"):
        axes = attr(node, "axes") if opset(node.graph) < 13 else (constant(node.inputs[1]) if len(node.inputs) > 1 else None)
        if axes is None or [int(a) for a in np.asarray(axes).reshape(-1)] not in ([0], [-1]):
            return None
        node, scalar_index = node.inputs[0].producer(), True
    else:
        scalar_index = False
    if not is_op(node, "Gather") or attr(node, "axis", 0) != 0:
        return None
    index = constant(node.inputs[1])
    shape_node = node.inputs[0].producer()
    if index is None or index.ndim != (0 if scalar_index else 1) or index.size != 1 or not is_op(shape_node, "Shape"):
        return None
    if attr(shape_node, "start") not in (None, 0) or attr(shape_node, "end") is not None:
        return None
    source = shape_node.inputs[0]
    if source.shape is None:
        return None
    i = int(index.reshape(()))
    i = i + len(source.shape) if i < 0 else i
    return (source, i) if 0 <= i < len(source.shape) else None


def _resolve(dim: tuple[ir.Value, int], data: ir.Value, position: int) -> int | None:
    """The target entry for ``source.shape[i]`` at ``position``: the dimension itself when static,
    0 ("copy") when ``data`` has that very dimension at ``position``, else None (unknown)."""
    source, i = dim
    size = source.shape[i]
    if isinstance(size, int):
        return size
    if position >= len(data.shape):
        return None
    if source is data and i == position:
        return 0
    there = data.shape[position]
    name = getattr(size, "value", None)
    return 0 if name is not None and name == getattr(there, "value", None) else None
