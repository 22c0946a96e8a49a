"""Turns a partitioned graph into a flat Plan: kernels specialized, slots numbered, copies placed."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.checks import CHECK_OUTPUTS_KEY, checked
from onnxmux.core.context import NodeContext, tensor_to_numpy
from onnxmux.core.donation import DONATE_KEY, donations, takes_part
from onnxmux.core.errors import InvalidGraph
from onnxmux.core.executor import DISCARD_SLOT, NONE_SLOT, Plan, SlotTable, StepLabel, liveness
from onnxmux.core.node_attributes import subgraphs_of
from onnxmux.core.provider import HOST, ExecutionProvider
from onnxmux.core.types import TypeInfo, type_info
from onnxmux.partition.failures import FailureRule
from onnxmux.partition.partitioner import Partitioner, Partitioning, Unit, fallback_count
from onnxmux.partition.placement import policy_of
from onnxmux.partition.plan import Copy, ExecutionPlan, build_plan

logger = logging.getLogger("onnxmux")


class GraphCompiler:
    """Compiles a graph and, recursively, the subgraphs of its control-flow nodes."""

    def __init__(
        self,
        opsets: Mapping[str, int],
        providers: Sequence[ExecutionProvider],
        declared_types: Mapping[str, TypeInfo] | None = None,
        rewrite: bool = False,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.opsets = dict(opsets)
        self.providers = list(providers)
        self.config = dict(config or {})
        self.failures = FailureRule(self.config)
        self.partitioner = Partitioner(providers, opsets, rewrite, self.failures, policy_of(self.config), self.type_of)
        self.declared_types = dict(declared_types or {})
        #: Each value's TypeInfo, found once (producers and readers ask for the same values).
        self._types: dict[ir.Value, TypeInfo] = {}
        self.transfers = {p.device: p.data_transfer for p in providers if p.data_transfer is not None}
        #: The provider owning each device other than the host (copies to and from it are its work).
        self.device_owner = {p.device: p.name for p in reversed(self.providers) if p.device != HOST}
        self.check_all_outputs = self.config.get(CHECK_OUTPUTS_KEY, "0") == "1"
        self._execution_plan: ExecutionPlan | None = None
        self._partitioned: tuple[Partitioning, list[Copy]] | None = None

    def type_of(self, value: ir.Value | None) -> TypeInfo | None:
        """The static type of a value (None for an absent optional one)."""
        found = self._types.get(value)  # most values are read after their producer typed them
        if found is None:
            if value is None or not value.name:
                return None
            found = self._types[value] = self.declared_types.get(value.name) or type_info(value)
        return found

    def compile_model(self, graph: ir.Graph) -> Plan:
        """The Plan of the top-level graph; its ExecutionPlan is described when first asked for."""
        builder = _PlanBuilder(self, graph, (), HOST)
        plan = builder.build()
        #: The top-level graph's units in running order (for the EPContext model).
        self.units = builder.partitioning.units
        self._partitioned = (builder.partitioning, builder.copies)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "partitioned %d nodes into %d partitions; %d device copies; %d nodes fell back to the CPU",
                len(self.execution_plan.nodes),
                len(self.execution_plan.partitions),
                len(builder.copies),
                fallback_count(builder.partitioning),
            )
        return plan

    @property
    def execution_plan(self) -> ExecutionPlan | None:
        """The plan of the top-level graph, for ``get_execution_plan`` (None before ``compile_model``);
        built on first use: most sessions never ask, and it is Python work per node."""
        if self._execution_plan is None and self._partitioned is not None:
            partitioning, copies = self._partitioned
            self._execution_plan = build_plan([p.name for p in self.providers], partitioning, copies)
        return self._execution_plan

    def compile(self, graph: ir.Graph, outer: Sequence[ir.Value] = (), home: str = HOST) -> Plan:
        """The Plan of a subgraph; ``outer`` lists the outer-scope values it is passed, on ``home``."""
        return _PlanBuilder(self, graph, outer, home).build()


class _PlanBuilder:
    """The state of compiling one graph: slots, where each value lives, the steps."""

    def __init__(self, compiler: GraphCompiler, graph: ir.Graph, outer: Sequence[ir.Value], home: str) -> None:
        self.compiler = compiler
        self.graph = graph
        self.home = home
        self.table = SlotTable()
        self.location: dict[int, str] = {}
        self.copy_slots: dict[tuple[int, str], int] = {}
        self.copied_from: dict[int, int] = {}
        self.copies: list[Copy] = []
        self.constants: dict[ir.Value, Any] = {}
        self.template_extra: dict[int, Any] = {}
        self.steps: list[list] = []
        self.labels: list[StepLabel] = []
        #: The node of each CPU kernel step, by step index (the steps that may take donated inputs).
        self.host_kernels: dict[int, ir.Node] = {}
        self.outer_slots = tuple(self._place(v, home) for v in outer)
        self.input_slots = tuple(self._place(v, home) for v in graph.inputs)
        for value in graph.initializers.values():
            self.constants[value] = tensor_to_numpy(value.const_value)
            self._place(value, HOST)
        self.implicit: dict[ir.Node, list[ir.Value]] = {}
        self.contexts: dict[ir.Node, NodeContext] = {}
        self.device_of: dict[ir.Node, str] = {}
        self._check_order()

    def _place(self, value: ir.Value, device: str) -> int:
        slot = self.table.add(value)
        self.location[slot] = device
        return slot

    def _check_order(self) -> None:
        """Find each node's implicit inputs, and refuse a node that reads a value defined later."""
        defined = set(self.table.slots)
        for node in self.graph:
            implicit = self.implicit[node] = free_values_of_node(node)
            for value in [*node.inputs, *implicit]:
                if value is not None and value.name and value not in defined:
                    raise InvalidGraph(
                        f"node '{node.name}' ({node.op_type}): input '{value.name}' is not a graph input, "
                        "an initializer or the output of an earlier node"
                    )
            defined.update(node.outputs)

    def context_of(self, node: ir.Node) -> NodeContext:
        """The node's context, built once."""
        ctx = self.contexts.get(node)
        if ctx is None:
            implicit = self.implicit.get(node)
            if implicit is None:  # a node made by a provider's fusion after partitioning
                implicit = self.implicit[node] = free_values_of_node(node)
            compiler = self.compiler
            inputs = node.inputs
            ctx = self.contexts[node] = NodeContext(
                node,
                compiler.opsets.get(node.domain or "", 1),
                list(map(compiler.type_of, inputs)),
                list(map(compiler.type_of, node.outputs)),
                implicit_inputs=[v.name for v in implicit],
                compile_subgraph=lambda g: compiler.compile(g, implicit, self.device_of.get(node, HOST)),
                constants=list(map(self.constants.get, inputs)),  # None for an absent input too
            )
        return ctx

    def build(self) -> Plan:
        self.partitioning = self.compiler.partitioner.partition(self.graph, self.context_of, self.implicit)
        for unit in self.partitioning.units:
            for node in unit.nodes:
                self.device_of[node] = unit.provider.device
        index = {node: i for i, node in enumerate(self.graph)}
        for unit in self.partitioning.units:
            self.steps.append(self._unit_step(unit))
            if takes_part(unit):
                self.host_kernels[len(self.steps) - 1] = unit.nodes[0]
            self.labels.append(_unit_label(unit, index, len(self.labels)))
        output_slots = []
        for value in self.graph.outputs:
            if value not in self.table.slots:
                raise InvalidGraph(f"graph output '{value.name}' is not produced by any node or input")
            output_slots.append(self._slot_on(value, self.home))
        self.donated = self._donations(set(output_slots))
        self._attach_checks(set(output_slots))
        liveness(self.steps, keep=set(output_slots))
        template: list[Any] = [None] * self.table.count
        for value, array in self.constants.items():
            template[self.table.slots[value]] = array
        for slot, array in self.template_extra.items():
            template[slot] = array
        return Plan(
            template,
            self.input_slots,
            self.outer_slots,
            tuple(output_slots),
            tuple((s[0], s[1], s[2], tuple(s[3]), s[4]) for s in self.steps),
            tuple(self.labels),
            dict(self.location),
            self.copied_from,
            self.donated,
        )

    def _donations(self, output_slots: set[int]) -> dict[int, Callable[..., Any]]:
        """The run functions of the steps that may overwrite an input (``donation.py``)."""
        if self.compiler.config.get(DONATE_KEY, "1") == "0":
            return {}
        pinned = output_slots | set(self.input_slots) | set(self.outer_slots) | set(self.template_extra)
        pinned.update(self.table.slots[v] for v in self.constants)
        return donations(self.steps, self.host_kernels, pinned)

    def _unit_step(self, unit: Unit) -> list:
        device = unit.provider.device
        if unit.compiled is not None:
            ins = [self._slot_on(v, device) for v in unit.inputs]
            outs = [self._place(v, device) for v in unit.outputs]
            names = ", ".join(n.name or n.op_type for n in unit.nodes[:3])
            more = "..." if len(unit.nodes) > 3 else ""
            description = f"{unit.provider.name} subgraph of {len(unit.nodes)} nodes ({names}{more})"
            types = [(i, v.name, self.compiler.type_of(v), v.is_graph_output()) for i, v in enumerate(unit.outputs)]
            check = (unit.provider, f"{unit.provider.name} partition of {len(unit.nodes)} nodes ({names}{more})", types, len(outs), True)
            return [unit.compiled, tuple(ins), tuple(outs), [], description, lambda: check]
        node = unit.nodes[0]
        ctx = self.context_of(node)
        run = self._specialize(unit, ctx)
        device = unit.provider.device
        host = unit.kernel.host_inputs
        ins = [self._slot_on(v, HOST if i in host else device) for i, v in enumerate(node.inputs)]
        ins += [self._slot_on(v, device) for v in self.implicit[node]]
        outs = [self._place(v, device) if v.name else DISCARD_SLOT for v in node.outputs]
        described = ctx.describe()
        return [run, tuple(ins), tuple(outs), [], f"{described} on {unit.provider.name}", lambda: _kernel_check(unit, ctx)]

    def _specialize(self, unit: Unit, ctx: NodeContext) -> Callable[..., Any]:
        """The kernel's run function for the node; a factory that raises hands the node to the
        next provider able to run it (the unit is updated), under the session's failure rule."""
        while True:
            try:
                return unit.kernel.factory(ctx, unit.provider.xp)
            except Exception as exc:
                provider = unit.provider
                later = self.compiler.providers[self.compiler.providers.index(provider) + 1 :]
                unit.provider, unit.kernel = self.compiler.failures.kernel_fallback(provider, later, ctx, exc)
                self.device_of[ctx.node] = unit.provider.device

    def _attach_checks(self, output_slots: set[int]) -> None:
        """Wrap the steps whose results leave their device or are graph outputs (all steps
        under ``session.check_provider_outputs``) in checks of their outputs."""
        boundary = set(output_slots)
        for step in self.steps:
            if len(step) == 5:  # a copy: its source leaves the device
                boundary.update(step[1])
        for index, step in enumerate(self.steps):
            if len(step) == 6 and (self.compiler.check_all_outputs or boundary.intersection(step[2])):
                provider, where, types, count, exact = step[5]()
                step[0] = checked(step[0], where, types, count, exact, provider.data_transfer)
                if index in self.donated:
                    self.donated[index] = checked(self.donated[index], where, types, count, exact, provider.data_transfer)

    def _slot_on(self, value: ir.Value | None, device: str) -> int:
        """The slot holding ``value`` on ``device``, adding one copy per value and device."""
        if value is None or not value.name:
            return NONE_SLOT
        slot = self.table.slots[value]
        source = self.location[slot]
        if source == device:
            return slot
        key = (slot, device)
        if key in self.copy_slots:
            return self.copy_slots[key]
        copied = self.copy_slots[key] = self.table.count
        self.table.count += 1
        self.location[copied] = device
        move = mover(self.compiler.transfers, source, device)
        if value in self.constants:  # initializers move once, at session creation
            self.template_extra[copied] = move(self.constants[value])
        else:
            self.copied_from[copied] = slot
            self.copies.append(Copy(value.name, source, device))
            self.steps.append([move, (slot,), (copied,), [], f"copy of '{value.name}' from {source} to {device}"])
            self.labels.append(copy_label(value.name, source, device, self.compiler.device_owner))
        return copied



def _kernel_check(unit: Unit, ctx: NodeContext) -> tuple:
    """What checks a kernel step's outputs (made only for the steps ``_attach_checks`` wraps)."""
    node = ctx.node
    named = [i for i, v in enumerate(node.outputs) if v.name]
    types = [(i, node.outputs[i].name, ctx.outputs[i], node.outputs[i].is_graph_output()) for i in named]
    return (unit.provider, f"{unit.provider.name} kernel of {ctx.describe()}", types, named[-1] + 1 if named else 0, False)


def copy_label(value: str, source: str, target: str, owner: Mapping[str, str]) -> StepLabel:
    """The profile label of a copy step; ``owner`` names the provider of each device."""
    kind = "MemcpyFromHost" if source == HOST else "MemcpyToHost" if target == HOST else "Memcpy"
    provider = owner.get(target) or owner.get(source, "")
    return StepLabel("copy", f"copy_{value}_to_{target}", kind, provider)


def mover(transfers: Mapping[str, Any], source: str, target: str) -> Callable[[Any], Any]:
    """The function moving a value from device ``source`` to ``target``: directly when the source's
    transfer offers a copier to the target, else through the host."""
    down = transfers.get(source)
    up = transfers.get(target)
    if down is not None and up is not None:
        direct = down.copier(target, up)
        if direct is not None:
            return direct
        return lambda v: up.to_device(down.to_host(v))
    if down is not None:
        return down.to_host
    if up is not None:
        return up.to_device
    return _identity


def _identity(value: Any) -> Any:
    return value


def _unit_label(unit: Unit, index: Mapping[ir.Node, int], step: int) -> StepLabel:
    """The label of a kernel node's step, or of a compiled group's (named for its provider and step)."""
    if unit.compiled is None:
        node = unit.nodes[0]
        return StepLabel("node", node.name or node.op_type, node.op_type, unit.provider.name, index.get(node, -1))
    first = min(index.get(n, -1) for n in unit.nodes)
    return StepLabel("subgraph", f"{unit.provider.name}_subgraph_{step}", "CompiledSubgraph", unit.provider.name, first)


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
