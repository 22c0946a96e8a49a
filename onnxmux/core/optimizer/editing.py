"""Small graph-editing helpers the rules share: constants, consumers, shapes, value replacement."""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core.context import tensor_to_numpy
from onnxmux.core.node_attributes import attribute_values, subgraphs_of

#: The project's own operator domain (fused kernels of the CPU provider).
ONNXMUX_DOMAIN = "com.onnxmux"
#: Graph metadata key: a predicate telling whether the session's providers run a com.onnxmux op.
PRIVATE_OPS_META = "onnxmux.private_ops"
#: Operators whose outputs differ from run to run: never folded, deduplicated or removed as no-ops.
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
)
FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


def is_op(node: ir.Node | None, *op_types: str, domain: str = "") -> bool:
    """Whether ``node`` is one of ``op_types`` in ``domain`` (``ai.onnx`` and ``""`` are the same)."""
    if node is None or node.op_type not in op_types:
        return False
    node_domain = "" if node.domain == "ai.onnx" else node.domain
    return node_domain == domain


def opset(graph: ir.Graph, domain: str = "") -> int:
    """The opset version of ``domain`` the graph's model imports (1 when not imported)."""
    imports = graph.opset_imports
    if domain == "":
        return imports.get("", imports.get("ai.onnx", 1))
    return imports.get(domain, 1)


def is_constant(value: ir.Value | None) -> bool:
    """Whether ``constant(value)`` has an array, decided without loading any tensor data."""
    if value is None:
        return False
    if value.const_value is not None and value.is_initializer() and not value.is_graph_input():
        return True
    producer = value.producer()
    if producer is None or not is_op(producer, "Constant"):
        return False
    attr = producer.attributes.get("value")
    return attr is not None and attr.type == ir.AttributeType.TENSOR


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is fixed at load time, else None.

    Fixed means a non-overridable initializer (an initializer that is also a graph input can be
    replaced by a feed) or the output of a Constant node holding a dense tensor.
    """
    if not is_constant(value):
        return None
    if value.const_value is not None and value.is_initializer():
        return tensor_to_numpy(value.const_value)
    return tensor_to_numpy(value.producer().attributes["value"].value)


def scalar(value: ir.Value | None) -> float | None:
    """The number a constant one-element tensor holds, else None."""
    array = constant(value)
    if array is None or array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(()))


def close_to(value: ir.Value | None, target: float, rtol: float = 1e-4) -> bool:
    """Whether ``value`` is a one-element constant within ``rtol`` of ``target``."""
    number = scalar(value)
    return number is not None and abs(number - target) <= rtol * abs(target)


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """A node attribute as a plain Python value (lists for repeated ones), or ``default``."""
    attribute = node.attributes.get(name)
    if attribute is None:
        return default
    value = attribute.value
    if attribute.type in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(value)
    return value


def has_subgraph(node: ir.Node) -> bool:
    """Whether the node holds GRAPH or GRAPHS attributes (If, Loop, Scan...)."""
    return any(a.type in _GRAPH_KINDS for a in attribute_values(node))


_GRAPH_KINDS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def subgraphs(graph: ir.Graph) -> list[ir.Graph]:
    """The bodies of the graph's control-flow nodes, nested ones included, outermost first."""
    found: list[ir.Graph] = []
    for node in graph:
        for body in subgraphs_of(node):
            found.append(body)
            found.extend(subgraphs(body))
    return found


#: Graph metadata key: the optimizer's NodeIndex of the graph, set only while a built-in rule runs.
NODE_INDEX_META = "onnxmux.node_index"


class NodeIndex:
    """A graph's nodes in order and by op type, taken when the graph last changed: the optimizer
    hands it to the built-in rules it runs, so rules that change nothing share one walk of the graph."""

    def __init__(self, graph: ir.Graph) -> None:
        self.nodes = list(graph)
        self._by_op: dict[str, list[ir.Node]] | None = None

    @property
    def by_op(self) -> dict[str, list[ir.Node]]:
        """The nodes of each op type, in order (sorted out on first use)."""
        if self._by_op is None:
            self._by_op = {}
            for node in self.nodes:
                self._by_op.setdefault(node.op_type, []).append(node)
        return self._by_op


def graph_nodes(graph: ir.Graph, op_types: frozenset[str] | None = None) -> list[ir.Node]:
    """The graph's nodes in order (only those of ``op_types`` when given), as a new list the
    caller may edit the graph while walking; from the optimizer's NodeIndex when it holds one."""
    index = graph.meta.get(NODE_INDEX_META)
    if index is None or len(index.nodes) != len(graph):
        nodes = list(graph)
        return nodes if op_types is None else [n for n in nodes if n.op_type in op_types]
    if op_types is None:
        return list(index.nodes)
    found = [index.by_op[op] for op in op_types if op in index.by_op]
    if len(found) == 1:
        return list(found[0])
    wanted = set(itertools.chain.from_iterable(found))
    return [n for n in index.nodes if n in wanted]


def count_nodes(graph: ir.Graph) -> int:
    """The number of nodes in the graph, those of its subgraphs included."""
    return len(graph) + sum(len(body) for body in subgraphs(graph))


def only_consumer(value: ir.Value) -> ir.Node | None:
    """The one node reading ``value`` when it has exactly one use and is not a graph output."""
    if value.is_graph_output():
        return None
    uses = value.uses()
    if len(uses) != 1:
        return None
    return uses[0].node


def other_input(node: ir.Node, value: ir.Value) -> ir.Value | None:
    """The other input of a two-input node, one of whose inputs is ``value``."""
    if len(node.inputs) != 2:
        return None
    first, second = node.inputs
    if first is value:
        return second
    if second is value:
        return first
    return None


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dimension is a known int, else None."""
    if value is None or value.shape is None:
        return None
    dims = tuple(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    return dims  # type: ignore[return-value]


def rank(value: ir.Value | None) -> int | None:
    """The value's rank when known."""
    if value is None or value.shape is None:
        return None
    return len(value.shape)


def same_shape(a: ir.Value, b: ir.Value) -> bool:
    """Whether two values certainly have the same shape (equal ints or equal named dims)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return False
    for x, y in zip(a.shape, b.shape):
        if isinstance(x, int) or isinstance(y, int):
            if x != y:
                return False
        elif x.value is None or x.value != y.value:
            return False
    return True


def dtype(value: ir.Value | None) -> ir.DataType | None:
    """The element type of a tensor value, when known."""
    if value is None or not isinstance(value.type, ir.TensorType):
        return None
    return value.type.dtype


# -- names --------------------------------------------------------------------------------

#: The value names in use, per graph; a model's graphs share one set (names are model-wide).
_NAMES: "weakref.WeakKeyDictionary[ir.Graph, set[str]]" = weakref.WeakKeyDictionary()
_COUNTER = itertools.count()


def reserve_names(graph: ir.Graph, bodies: list[ir.Graph] | None = None) -> None:
    """(Re)collect the names used in ``graph`` and its subgraphs (``bodies``, found when None),
    which ``unique_name`` avoids.

    Called before rewriting starts, and again after code that may have named values itself.
    """
    names: set[str] = set()
    for g in [graph, *(subgraphs(graph) if bodies is None else bodies)]:
        names.update(v.name for v in itertools.chain(g.inputs, g.initializers.values()) if v.name)
        for node in g:
            names.update(v.name for v in node.outputs if v.name)
        _NAMES[g] = names


def unique_name(graph: ir.Graph, base: str) -> str:
    """A value name not used in the model ``graph`` belongs to, derived from ``base``."""
    names = _NAMES.get(graph)
    if names is None:
        reserve_names(graph)
        names = _NAMES[graph]
    name = base
    while name in names:
        name = f"{base}_{next(_COUNTER)}"
    names.add(name)
    return name


def make_initializer(graph: ir.Graph, array: np.ndarray, base: str, *, exact: bool = False) -> ir.Value:
    """Register ``array`` as a new initializer of ``graph`` named after ``base`` (exactly ``base``
    when ``exact``: the caller has freed that name)."""
    tensor = ir.Tensor(np.asarray(array, order="C"))
    value = ir.Value(
        name=base if exact else unique_name(graph, base),
        shape=ir.Shape(array.shape),
        type=ir.TensorType(tensor.dtype),
        const_value=tensor,
    )
    graph.register_initializer(value)
    return value


def new_output(like: ir.Value, graph: ir.Graph, base: str | None = None) -> ir.Value:
    """A fresh value with ``like``'s type and shape, to be the output of a replacement node."""
    return ir.Value(name=unique_name(graph, base or like.name or "v"), type=like.type, shape=like.shape)


# -- replacing values ---------------------------------------------------------------------


def can_take_name(graph: ir.Graph, value: ir.Value) -> bool:
    """Whether ``value`` may be renamed into a graph output: a node output of ``graph`` that is
    not already a graph input, output or initializer."""
    producer = value.producer()
    return (
        producer is not None
        and producer.graph is graph
        and not value.is_graph_output()
        and not value.is_graph_input()
        and not value.is_initializer()
    )


def replace_value(graph: ir.Graph, old: ir.Value, new: ir.Value, *, allow_identity: bool = True) -> bool:
    """Make every reader of ``old`` (subgraphs included) read ``new``; graph outputs keep their names.

    When ``old`` is a graph output, ``new`` takes over its name and place. Where ``new`` cannot
    be renamed (it is a graph input, initializer or another output) an Identity keeps the
    output's name if ``allow_identity``; otherwise nothing changes and False is returned.
    """
    if old is new:
        return True
    positions = [i for i, v in enumerate(graph.outputs) if v is old]
    renamable = can_take_name(graph, new)
    if positions and not renamable and not allow_identity:
        return False
    if positions:
        name = old.name
        old.name = unique_name(graph, f"{name}_replaced")
        keeper = new
        if renamable:
            new.name = name
            if new.type is None:
                new.type = old.type
            if new.shape is None:
                new.shape = old.shape
        else:
            keeper = ir.Value(name=name, type=old.type, shape=old.shape)
            graph.append(ir.Node("", "Identity", [new], outputs=[keeper], name=unique_name(graph, f"{name}_keep")))
        for i in positions:
            graph.outputs[i] = keeper
    old.replace_all_uses_with(new)
    return True


def bypass(graph: ir.Graph, node: ir.Node, source: ir.Value) -> bool:
    """Remove a node that passes ``source`` through unchanged to its first output.

    Readers of the output read ``source`` instead. Returns False (and changes nothing) when the
    output is a graph output that ``source`` cannot be renamed into, or when other outputs of
    the node are still read.
    """
    out = node.outputs[0]
    if any(v.uses() or v.is_graph_output() for v in node.outputs[1:]):
        return False
    if not replace_value(graph, out, source, allow_identity=False):
        return False
    graph.remove(node, safe=True)
    return True


def replace_with_node(
    graph: ir.Graph,
    last: ir.Node,
    op_type: str,
    inputs: Sequence[ir.Value | None],
    attributes: Sequence[ir.Attr] = (),
    domain: str = "",
) -> ir.Node:
    """A new node computing what ``last`` (the end of a matched pattern) computed, in its place.

    The node is inserted just before ``last`` (so every value the pattern read is defined),
    readers of ``last``'s output read the new node's, and ``last`` is removed; the rest of the
    pattern is left to dead code elimination.
    """
    out = new_output(last.outputs[0], graph)
    node = ir.Node(domain, op_type, inputs, attributes=attributes, outputs=[out], name=f"{last.name}_{op_type}")
    graph.insert_before(last, node)
    replace_value(graph, last.outputs[0], out)
    graph.remove(last, safe=True)
    return node


def private_op_allowed(graph: ir.Graph, op_type: str) -> bool:
    """Whether a fusion may create the com.onnxmux ``op_type`` in ``graph`` (see ``optimize``'s
    ``private_ops``; allowed when no predicate was given)."""
    allowed = graph.meta.get(PRIVATE_OPS_META)
    return allowed is None or bool(allowed(op_type))
