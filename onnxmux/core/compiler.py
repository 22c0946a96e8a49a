"""Turns an IR graph whose nodes have been assigned to providers into a flat Plan."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.context import NodeContext, tensor_to_numpy
from onnxmux.core.errors import InvalidGraph, OnnxMuxError
from onnxmux.core.executor import DISCARD_SLOT, Plan, SlotTable, liveness
from onnxmux.core.types import TypeInfo, type_info

#: ``kernel_for(ctx) -> run``: the partitioner's choice of provider and kernel for a node.
KernelChooser = Callable[[NodeContext], Callable[..., Any]]


class GraphCompiler:
    """Compiles a graph and, recursively, the subgraphs of its control-flow nodes."""

    def __init__(
        self,
        opsets: Mapping[str, int],
        kernel_for: KernelChooser,
        declared_types: Mapping[str, TypeInfo] | None = None,
    ) -> None:
        self.opsets = dict(opsets)
        self.kernel_for = kernel_for
        self.declared_types = dict(declared_types or {})

    def type_of(self, value: ir.Value | None) -> TypeInfo | None:
        """The static type of a value (None for an absent optional one)."""
        if value is None or not value.name:
            return None
        return self.declared_types.get(value.name) or type_info(value)

    def compile(self, graph: ir.Graph, outer: Sequence[ir.Value] = ()) -> Plan:
        """A Plan for ``graph``; ``outer`` lists the outer-scope values it is passed."""
        table = SlotTable()
        outer_slots = tuple(table.add(v) for v in outer)
        input_slots = tuple(table.add(v) for v in graph.inputs)
        constants: dict[int, Any] = {}
        for value in graph.initializers.values():
            slot = table.add(value)
            constants[slot] = tensor_to_numpy(value.const_value)
        steps: list[list] = []
        for node in graph:
            steps.append(self._step(node, table, constants))
        output_slots = []
        for value in graph.outputs:
            if value not in table.slots:
                raise InvalidGraph(f"graph output '{value.name}' is not produced by any node or input")
            output_slots.append(table.slots[value])
        liveness(steps, keep=set(output_slots))
        template: list[Any] = [None] * table.count
        for slot, array in constants.items():
            template[slot] = array
        return Plan(
            template,
            input_slots,
            outer_slots,
            tuple(output_slots),
            tuple(tuple(s[:3]) + (tuple(s[3]), s[4]) for s in steps),
        )

    def _step(self, node: ir.Node, table: SlotTable, constants: dict[int, Any]) -> list:
        for value in node.inputs:
            if value is not None and value.name and value not in table.slots:
                raise InvalidGraph(
                    f"node '{node.name}' ({node.op_type}): input '{value.name}' is not a graph input, "
                    "an initializer or the output of an earlier node"
                )
        implicit = free_values_of_node(node)
        for value in implicit:
            if value not in table.slots:
                raise InvalidGraph(
                    f"node '{node.name}' ({node.op_type}): its subgraph reads '{value.name}', "
                    "which is not defined before it"
                )
        ins = [table.input_slot(v) for v in node.inputs] + [table.slots[v] for v in implicit]
        ctx = NodeContext(
            node,
            self.opsets.get(node.domain or "", 1),
            [self.type_of(v) for v in node.inputs],
            [self.type_of(v) for v in node.outputs],
            implicit_inputs=[v.name for v in implicit],
            compile_subgraph=lambda g: self.compile(g, outer=implicit),
            constants=[constants.get(i) if i > DISCARD_SLOT else None for i in ins[: len(node.inputs)]],
        )
        try:
            run = self.kernel_for(ctx)
        except OnnxMuxError:
            raise
        except Exception as exc:
            raise ctx.error(f"kernel set-up failed: {type(exc).__name__}: {exc}") from exc
        outs = [table.add(v) if v.name else DISCARD_SLOT for v in node.outputs]
        return [run, tuple(ins), tuple(outs), [], ctx.describe()]


def subgraphs_of(node: ir.Node) -> list[ir.Graph]:
    """The graphs held in a node's GRAPH and GRAPHS attributes."""
    graphs: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            graphs.append(attr.value)
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.extend(attr.value)
    return graphs


def free_values_of_node(node: ir.Node) -> list[ir.Value]:
    """Outer-scope values read inside a node's subgraphs, in first-use order."""
    seen: dict[ir.Value, None] = {}
    for graph in subgraphs_of(node):
        for value in free_values(graph):
            seen.setdefault(value, None)
    return list(seen)


def free_values(graph: ir.Graph) -> list[ir.Value]:
    """Values a graph (or its nested subgraphs) reads but does not define."""
    defined: set[ir.Value] = set(graph.inputs) | set(graph.initializers.values())
    free: dict[ir.Value, None] = {}
    for node in graph:
        for value in list(node.inputs) + free_values_of_node(node):
            if value is not None and value.name and value not in defined:
                free.setdefault(value, None)
        defined.update(node.outputs)
    for value in graph.outputs:
        if value not in defined:
            free.setdefault(value, None)
    return list(free)
