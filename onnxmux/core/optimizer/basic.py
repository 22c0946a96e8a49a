"""Basic (level 1) rules: no-op removal, dead code, common subexpressions and constant sharing.

These rewrites never change a computation: they drop nodes that pass their input through
unchanged and share work or constants that are provably identical.
"""

from __future__ import annotations

from typing import Any, Hashable

import onnx_ir as ir

from onnxmux.core.bulk_attrs import is_bulk
from onnxmux.core.context import tensor_to_numpy
from onnxmux.core.node_attributes import attribute_items
from onnxmux.core.optimizer.editing import (
    ONNXMUX_DOMAIN,
    RANDOM_OPS,
    attr,
    bypass,
    constant,
    dtype,
    graph_nodes,
    has_subgraph,
    is_op,
    opset,
    rank,
    static_shape,
)
from onnxmux.core.optimizer.rules import PatternRule, Rule

#: Slice ends at or beyond this (INT32_MAX and up) mean "to the end" whatever the dimension.
_SLICE_TO_END = 2**31 - 1


class _NoOpRule(PatternRule):
    """A node that passes its first input through unchanged is bypassed and removed."""

    op_type = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.roots = frozenset({cls.op_type})

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Whether this node of ``op_type`` leaves its first input unchanged."""
        raise NotImplementedError

    def match(self, node: ir.Node) -> Any | None:
        """The node itself when it is a no-op of this rule's op type."""
        if not is_op(node, self.op_type) or not node.inputs or node.inputs[0] is None:
            return None
        return node if self.is_noop(node.graph, node) else None

    def apply(self, graph: ir.Graph) -> int:
        """Bypass every no-op node whose output can be redirected (graph outputs keep their names)."""
        count = 0
        for node in graph_nodes(graph, self.roots):
            if node.graph is not graph:
                continue
            if self.match(node) is not None and bypass(graph, node, node.inputs[0]):
                count += 1
        return count


class EliminateIdentity(_NoOpRule):
    """Identity nodes: readers read the input directly."""

    name = "EliminateIdentity"
    op_type = "Identity"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Identity always is."""
        return True


class EliminateDropout(_NoOpRule):
    """Dropout in inference mode (no training_mode input, or a constant false one) whose mask is unused."""

    name = "EliminateDropout"
    op_type = "Dropout"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Inference mode, and nobody reads the mask."""
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            return False
        if opset(graph) < 12:
            return True
        if len(node.inputs) < 3 or node.inputs[2] is None:
            return True
        training = constant(node.inputs[2])
        return training is not None and not bool(training.reshape(-1)[0])


class EliminateNoOpCast(_NoOpRule):
    """Cast to the type its input already has."""

    name = "EliminateNoOpCast"
    op_type = "Cast"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """The ``to`` type equals the input's element type."""
        source = dtype(node.inputs[0])
        return source is not None and attr(node, "to") == source.value


class EliminateNoOpReshape(_NoOpRule):
    """Reshape to the shape its input already has (static, or matched dim by dim)."""

    name = "EliminateNoOpReshape"
    op_type = "Reshape"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """The target shape equals the input's, or the output's static shape does."""
        data = node.inputs[0]
        source = static_shape(data)
        if source is not None and source == static_shape(node.outputs[0]):
            return True
        target = attr(node, "shape") if opset(graph) < 5 else _const_ints(node, 1)
        if target is None or data.shape is None or len(target) != len(data.shape):
            return False
        allowzero = attr(node, "allowzero", 0)
        inferred = 0
        for want, have in zip(target, data.shape):
            if want == -1:
                inferred += 1
            elif not (want == 0 and not allowzero) and want != have:
                return False
        return inferred <= 1


class EliminateIdentityTranspose(_NoOpRule):
    """Transpose whose permutation keeps every axis in place."""

    name = "EliminateIdentityTranspose"
    op_type = "Transpose"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """``perm`` is 0..n-1 (or absent on a rank-0/1 input)."""
        perm = attr(node, "perm")
        if perm is None:
            r = rank(node.inputs[0])
            return r is not None and r <= 1
        return perm == list(range(len(perm)))


class EliminateNoOpSlice(_NoOpRule):
    """Slice whose every sliced axis starts at 0, runs to the end and steps by 1."""

    name = "EliminateNoOpSlice"
    op_type = "Slice"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Every (start, end, step) keeps the whole axis."""
        data = node.inputs[0]
        if data.shape is None:
            return False
        if opset(graph) < 10:
            starts, ends = attr(node, "starts"), attr(node, "ends")
            axes, steps = attr(node, "axes"), None
        else:
            starts, ends = _const_ints(node, 1), _const_ints(node, 2)
            axes, steps = _const_ints(node, 3), _const_ints(node, 4)
            if (len(node.inputs) > 3 and node.inputs[3] is not None and axes is None) or (
                len(node.inputs) > 4 and node.inputs[4] is not None and steps is None
            ):
                return False
        if starts is None or ends is None:
            return False
        r = len(data.shape)
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        for axis, start, end, step in zip(axes, starts, ends, steps):
            if step != 1 or not -r <= axis < r:
                return False
            dim = data.shape[axis]
            known = isinstance(dim, int)
            keeps_start = start == 0 or (known and start <= -dim)
            keeps_end = end >= _SLICE_TO_END or (known and end >= dim)
            if not (keeps_start and keeps_end):
                return False
        return True


class EliminateZeroPad(_NoOpRule):
    """Pad by zero on every side (any mode)."""

    name = "EliminateZeroPad"
    op_type = "Pad"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """All pad amounts are zero."""
        if opset(graph) < 11:
            pads = attr(node, "paddings" if opset(graph) < 2 else "pads")
        else:
            pads = _const_ints(node, 1)
        return pads is not None and not any(pads)


class EliminateNoOpExpand(_NoOpRule):
    """Expand to a shape the input already has (every target dim is 1 or the input's own)."""

    name = "EliminateNoOpExpand"
    op_type = "Expand"

    def is_noop(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Broadcasting the input to the target shape leaves it unchanged."""
        data = node.inputs[0]
        target = _const_ints(node, 1)
        if target is None or data.shape is None or len(target) > len(data.shape):
            return False
        dims = list(data.shape)[len(data.shape) - len(target) :]
        return all(t == 1 or (isinstance(d, int) and t == d) for t, d in zip(target, dims))


def _const_ints(node: ir.Node, index: int) -> list[int] | None:
    """A constant integer input as a list of ints."""
    if index >= len(node.inputs) or node.inputs[index] is None:
        return None
    array = constant(node.inputs[index])
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.reshape(-1)]


class DeadCodeElimination(Rule):
    """Remove nodes whose outputs nobody reads, and initializers nobody reads.

    Graph inputs and outputs are kept, so the model's signature does not change.
    """

    name = "DeadCodeElimination"

    def apply(self, graph: ir.Graph) -> int:
        """Remove what is unused, last node first; returns how many nodes and initializers went."""
        count = 0
        for node in reversed(graph_nodes(graph)):
            if not any(v.uses() or v.is_graph_output() for v in node.outputs):
                graph.remove(node, safe=True)
                count += 1
        for value in list(graph.initializers.values()):
            if not (value.uses() or value.is_graph_output() or value.is_graph_input()):
                del graph.initializers[value.name]
                count += 1
        return count


#: Domains whose ops are pure functions of their inputs and attributes (safe to deduplicate).
_PURE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", ONNXMUX_DOMAIN})
#: Tensor attributes larger than this are not hashed for CSE.
_CSE_TENSOR_LIMIT = 1024


class CommonSubexpressionElimination(Rule):
    """Nodes with the same op, domain, attributes and inputs compute once.

    Random ops, Dropout, nodes with subgraphs and ops of unknown domains are never merged;
    neither is a node that produces a graph output.
    """

    name = "CommonSubexpressionElimination"

    def apply(self, graph: ir.Graph) -> int:
        """Merge duplicates onto their first occurrence; returns how many nodes were merged.

        Only a node whose op type and inputs an earlier node shares has its full key (attributes
        hashed) computed, and that earlier node's: few nodes share them.
        """
        pending: dict[tuple, ir.Node | None] = {}  # op type and inputs -> a first node not keyed yet
        seen: dict[Hashable, ir.Node] = {}
        count = 0
        for node in graph_nodes(graph):
            shared = (node.op_type, tuple(map(id, node.inputs)))
            if shared not in pending:
                pending[shared] = node
                continue
            earlier = pending[shared]
            if earlier is not None:  # equal keys imply equal op types and inputs: it is the first
                pending[shared] = None
                earlier_key = _cse_key(earlier)
                if earlier_key is not None:
                    seen[earlier_key] = earlier
            key = _cse_key(node)
            if key is None:
                continue
            first = seen.setdefault(key, node)
            if first is node or any(v.is_graph_output() for v in node.outputs):
                continue
            for mine, theirs in zip(node.outputs, first.outputs):
                mine.replace_all_uses_with(theirs)
            graph.remove(node, safe=True)
            count += 1
        return count


def _cse_key(node: ir.Node) -> Hashable | None:
    """What makes two nodes interchangeable, or None when the node must not be merged."""
    if node.domain not in _PURE_DOMAINS or node.op_type in RANDOM_OPS or node.op_type == "Dropout":
        return None
    if has_subgraph(node) or any(not v.name for v in node.outputs):
        return None
    attributes = []
    for name, attribute in sorted(attribute_items(node)):
        value = _attr_key(attribute)
        if value is None:
            return None
        attributes.append((name, value))
    return (
        node.domain or "",
        node.op_type,
        node.overload,
        len(node.outputs),
        tuple(id(v) if v is not None else None for v in node.inputs),
        tuple(attributes),
    )


def _attr_key(attribute: ir.Attr) -> Hashable | None:
    """A hashable form of an attribute's value (None for kinds CSE does not compare)."""
    if attribute.is_ref():
        return None
    kind = attribute.type
    if is_bulk(attribute):  # a long list: its bytes, without making its tuple
        return (kind, attribute.content_key())
    value = attribute.value
    if kind in (ir.AttributeType.INT, ir.AttributeType.FLOAT, ir.AttributeType.STRING):
        return (kind, value)
    if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return (kind, tuple(value))
    if kind == ir.AttributeType.TENSOR and value.size <= _CSE_TENSOR_LIMIT:
        array = tensor_to_numpy(value)
        if array.dtype == object:
            return None
        return (kind, array.dtype.str, array.shape, array.tobytes())
    return None


#: Initializers with at most this many elements are deduplicated.
SHARED_CONSTANT_LIMIT = 1024


class ConstantSharing(Rule):
    """Identical small initializers (same type, shape and bytes) become one."""

    name = "ConstantSharing"

    def __init__(self) -> None:
        #: Content keys already computed, by tensor (tensors are never modified in place).
        self._keys: dict[int, tuple[ir.TensorProtocol, Hashable | None]] = {}

    def apply(self, graph: ir.Graph) -> int:
        """Redirect readers of duplicates to the first copy; returns how many were removed."""
        canonical: dict[Hashable, ir.Value] = {}
        count = 0
        for value in list(graph.initializers.values()):
            if value.is_graph_input() or value.is_graph_output():
                continue
            key = self._key(value.const_value)
            if key is None:
                continue
            first = canonical.setdefault(key, value)
            if first is value:
                continue
            value.replace_all_uses_with(first)
            del graph.initializers[value.name]
            count += 1
        return count

    def _key(self, tensor: ir.TensorProtocol | None) -> Hashable | None:
        """(dtype, shape, bytes) of a small non-string tensor, else None."""
        if tensor is None or tensor.size > SHARED_CONSTANT_LIMIT:
            return None
        cached = self._keys.get(id(tensor))
        if cached is not None and cached[0] is tensor:
            return cached[1]
        array = tensor_to_numpy(tensor)
        key = None if array.dtype == object else (array.dtype.str, array.shape, array.tobytes())
        self._keys[id(tensor)] = (tensor, key)
        return key
