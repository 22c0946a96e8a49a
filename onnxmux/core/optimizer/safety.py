"""Checks that a rewritten graph is still well formed, and snapshots to roll a bad rewrite back."""

from __future__ import annotations

import itertools

import onnx
import onnx_ir as ir

from onnxmux.core.node_attributes import attribute_items, attribute_values
from onnxmux.core.optimizer.editing import subgraphs

#: Run onnx.checker on the serialized model only below this many initializer bytes (it copies them).
CHECKER_BYTES_LIMIT = 64 * 1024 * 1024


def graph_problems(graph: ir.Graph, outer: frozenset[ir.Value] = frozenset()) -> list[str]:
    """What is wrong with the graph's structure (empty when nothing is).

    Every node input must be defined before use (graph input, initializer, earlier node output
    or, in a subgraph, an outer-scope value), every value must be defined once with a unique
    name, every graph output must be defined, and nodes must belong to this graph.
    """
    problems: list[str] = []
    defined: set[ir.Value] = set(outer)
    names: set[str] = set()

    def define(value: ir.Value, what: str) -> None:
        if value in defined and value not in outer:
            problems.append(f"{what} '{value.name}' is defined twice")
        if value.name:
            if value.name in names:
                problems.append(f"{what}: the name '{value.name}' is used by two values")
            names.add(value.name)
        defined.add(value)

    for value in itertools.chain(graph.inputs, (v for v in graph.initializers.values() if not v.is_graph_input())):
        define(value, "graph input or initializer")
    for node in graph:
        label = f"node '{node.name}' ({node.op_type})"
        if node.graph is not graph:
            problems.append(f"{label} does not belong to the graph it is listed in")
        for value in node.inputs:
            if value is not None and value not in defined:
                problems.append(f"{label} reads '{value.name}' before it is defined (or it is never defined)")
        for attribute in attribute_values(node):
            if attribute.type == ir.AttributeType.GRAPH:
                problems.extend(graph_problems(attribute.value, frozenset(defined)))
            elif attribute.type == ir.AttributeType.GRAPHS:
                for sub in attribute.value:
                    problems.extend(graph_problems(sub, frozenset(defined)))
        for value in node.outputs:
            if value.producer() is not node:
                problems.append(f"{label}: output '{value.name}' names another producer")
            define(value, f"{label} output")
    for value in graph.outputs:
        if value not in defined:
            problems.append(f"graph output '{value.name}' is not defined")
    return problems


def model_problems(model: ir.Model) -> list[str]:
    """``graph_problems`` of the main graph, then onnx.checker's verdict when that is cheap."""
    problems = graph_problems(model.graph)
    if problems:
        return problems
    size = sum(_nbytes(v) for v in model.graph.initializers.values())
    if size <= CHECKER_BYTES_LIMIT:
        try:
            onnx.checker.check_model(ir.serde.serialize_model(model))
        except Exception as exc:  # the checker's own error types vary between onnx versions
            problems.append(f"onnx.checker: {str(exc).strip().splitlines()[0]}")
    return problems


def _nbytes(value: ir.Value) -> int:
    tensor = value.const_value
    return tensor.nbytes if tensor is not None else 0


class Snapshot:
    """A graph's structure as it was, to roll rewrites back in place.

    It records, for the graph and its subgraphs, the node order, each node's inputs and
    attributes, the graph inputs, outputs and initializers, and each value's name, type, shape
    and constant; restoring rewires exactly that. It costs a few tuples per node instead of a
    deep copy, and covers every edit the built-in rules make (they never resize a node's outputs
    or modify a tensor in place). User rules, which may do anything, get a full clone instead.
    """

    def __init__(self, graph: ir.Graph, bodies: list[ir.Graph] | None = None) -> None:
        """Record ``graph`` and its subgraphs (``bodies``, found when None)."""
        self.graphs = []
        self.nodes: dict[ir.Node, tuple[tuple, dict]] = {}
        self.values: dict[ir.Value, tuple] = {}
        for g in [graph, *(subgraphs(graph) if bodies is None else bodies)]:
            nodes = list(g)
            self.graphs.append((g, nodes, list(g.inputs), list(g.outputs), list(g.initializers.values())))
            for value in itertools.chain(g.inputs, g.initializers.values()):
                self._keep(value)
            for node in nodes:
                self.nodes[node] = (node.inputs, dict(attribute_items(node)))
                for value in node.outputs:
                    self._keep(value)

    def _keep(self, value: ir.Value) -> None:
        self.values[value] = (value.name, value.type, value.shape, value.const_value)

    def restore(self) -> None:
        """Put every recorded graph back as it was; nodes and values added since are dropped."""
        for g, *_ in self.graphs:
            current = list(g)
            for node in current:
                for i in range(len(node.inputs)):
                    node.replace_input_with(i, None)
            g.remove(current, safe=False)
            g.outputs.clear()
            g.inputs.clear()
            g.initializers.clear()
        for value, (name, type_, shape, const) in self.values.items():
            value.name, value.type, value.shape, value.const_value = name, type_, shape, const
        for g, nodes, inputs, outputs, initializers in self.graphs:
            g.inputs.extend(inputs)
            for value in initializers:
                g.register_initializer(value)
            g.extend(nodes)
            for node in nodes:
                inputs_, attributes = self.nodes[node]
                node.resize_inputs(len(inputs_))
                for i, value in enumerate(inputs_):
                    node.replace_input_with(i, value)
                node.attributes.clear()
                node.attributes.update(attributes)
            g.outputs.extend(outputs)


def clone_snapshot(graph: ir.Graph) -> ir.Graph:
    """A full copy of the graph sharing its tensors (for rules that may edit anything)."""
    return graph.clone()


def restore_clone(graph: ir.Graph, saved: ir.Graph) -> None:
    """Make ``graph`` hold ``saved``'s contents again, keeping the ``graph`` object itself.

    Callers hold references to the model's graph, so a rollback moves the copy's nodes,
    inputs, outputs and initializers into it instead of swapping graphs.
    """
    graph.remove(list(graph), safe=False)
    graph.outputs.clear()
    graph.inputs.clear()
    graph.initializers.clear()
    inputs = list(saved.inputs)
    outputs = list(saved.outputs)
    initializers = list(saved.initializers.values())
    saved.outputs.clear()
    saved.inputs.clear()
    saved.initializers.clear()
    nodes = list(saved)
    saved.remove(nodes, safe=False)
    graph.inputs.extend(inputs)
    for value in initializers:
        graph.register_initializer(value)
    graph.extend(nodes)
    graph.outputs.extend(outputs)
