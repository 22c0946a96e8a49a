"""Priority partitioning: providers claim nodes in the user's order; the CPU takes the rest.

A kernel-based provider claims single nodes it has a kernel for. A compile-based provider
is shown the nodes nobody took yet and returns groups; each group is split into pieces that
fuse without a cycle and compiled, and a piece whose compile raises falls back to the next
provider with a warning.
"""

from __future__ import annotations

import heapq
import logging
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import UnsupportedOperator
from onnxmux.core.provider import CompileProvider, ExecutionProvider, KernelProvider
from onnxmux.core.registry import KernelDef
from onnxmux.partition.convex import predecessors, split_acyclic
from onnxmux.partition.subgraph import boundary, extract

logger = logging.getLogger("onnxmux")


@dataclass
class Unit:
    """One step of the plan: a single kernel node, or a compiled group of nodes."""

    provider: ExecutionProvider
    nodes: list[ir.Node]
    kernel: KernelDef | None = None
    compiled: Callable[..., tuple] | None = None
    inputs: list[ir.Value] = field(default_factory=list)
    outputs: list[ir.Value] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``compiled`` for a fused group, ``kernels`` for a kernel node."""
        return "compiled" if self.compiled is not None else "kernels"


@dataclass
class Partitioning:
    """The units of a graph in a runnable order, and why providers passed on nodes."""

    units: list[Unit]
    declined: dict[ir.Node, dict[str, str]]


class Partitioner:
    """Assigns the nodes of one graph to providers."""

    def __init__(
        self,
        providers: Sequence[ExecutionProvider],
        opsets: Mapping[str, int],
        rewrite: bool = False,
    ) -> None:
        self.providers = list(providers)
        self.opsets = dict(opsets)
        self.rewrite = rewrite

    def partition(
        self,
        graph: ir.Graph,
        context_of: Callable[[ir.Node], NodeContext],
        implicit: Mapping[ir.Node, Sequence[ir.Value]],
    ) -> Partitioning:
        """Claim every node of ``graph``; raises UnsupportedOperator listing the unclaimed ones."""
        order = list(graph)
        preds = predecessors(order, implicit)
        owner: dict[ir.Node, ExecutionProvider] = {}
        kernels: dict[ir.Node, KernelDef] = {}
        compiled: list[Unit] = []
        declined: dict[ir.Node, dict[str, str]] = {n: {} for n in order}
        for provider in self.providers:
            candidates = [n for n in order if n not in owner]
            if not candidates:
                break
            if isinstance(provider, KernelProvider):
                for node in candidates:
                    kernel, reason = provider.kernel_for(context_of(node))
                    if kernel is None:
                        declined[node][provider.name] = reason or "declined"
                    else:
                        owner[node], kernels[node] = provider, kernel
            elif isinstance(provider, CompileProvider):
                for unit in self._compile_claims(provider, graph, order, preds, candidates, implicit, declined):
                    compiled.append(unit)
                    owner.update((n, provider) for n in unit.nodes)
        missing = [n for n in order if n not in owner]
        if missing:
            raise UnsupportedOperator(_unclaimed_message(missing, context_of, declined))
        if self.rewrite:
            self._rewrite(graph, owner, kernels, context_of)
        return Partitioning(self._order_units(graph, owner, kernels, compiled, implicit), declined)

    def _compile_claims(
        self,
        provider: CompileProvider,
        graph: ir.Graph,
        order: list[ir.Node],
        preds: dict[ir.Node, set[ir.Node]],
        candidates: list[ir.Node],
        implicit: Mapping[ir.Node, Sequence[ir.Value]],
        declined: dict[ir.Node, dict[str, str]],
    ) -> list[Unit]:
        allowed = set(candidates)
        try:
            groups = provider.claim(graph, candidates)
        except Exception as exc:
            warnings.warn(f"{provider.name}.claim failed and is skipped: {type(exc).__name__}: {exc}", stacklevel=2)
            for node in candidates:
                declined[node][provider.name] = f"claim failed: {exc}"
            return []
        taken: set[ir.Node] = set()
        units = []
        for group in groups:
            valid = set()
            for node in group:
                if node not in allowed:
                    warnings.warn(f"{provider.name} claimed a node that is not in its candidates ({_label(node)}); ignored", stacklevel=2)
                elif node in taken or node in valid:
                    warnings.warn(f"{provider.name} claimed {_label(node)} twice; the second claim is ignored", stacklevel=2)
                else:
                    valid.add(node)
            taken |= valid
            for piece in split_acyclic(order, preds, valid):
                unit = self._compile_piece(provider, graph, piece, implicit, declined)
                if unit is not None:
                    units.append(unit)
        for node in candidates:
            if node not in taken:
                declined[node].setdefault(provider.name, provider.explain(node))
        return units

    def _compile_piece(self, provider, graph, piece, implicit, declined) -> Unit | None:
        subgraph = extract(piece, graph, self.opsets, implicit)
        try:
            function = provider.compile(subgraph)
        except Exception as exc:
            warnings.warn(
                f"{provider.name} failed to compile a subgraph of {len(piece)} nodes "
                f"({', '.join(_label(n) for n in piece[:3])}{'...' if len(piece) > 3 else ''}); "
                f"it falls back to the next provider: {type(exc).__name__}: {exc}",
                stacklevel=2,
            )
            for node in piece:
                declined[node][provider.name] = f"compile failed: {type(exc).__name__}: {exc}"
            return None
        inputs, outputs = boundary(piece, graph, implicit)
        by_name = {v.name: v for v in inputs}
        out_by_name = {v.name: v for v in outputs}
        return Unit(
            provider,
            piece,
            compiled=function,
            inputs=[by_name[n] for n in subgraph.inputs],
            outputs=[out_by_name[n] for n in subgraph.outputs],
        )

    def _rewrite(self, graph, owner, kernels, context_of) -> None:
        """Let each kernel provider fuse among its own nodes (optimization level ALL)."""
        for provider in self.providers:
            if not isinstance(provider, KernelProvider):
                continue
            mine = [n for n in graph if owner.get(n) is provider and n in kernels]
            after = provider.rewrite_partition(graph, mine)
            for node in set(mine) - set(after):
                owner.pop(node, None)
                kernels.pop(node, None)
            for node in after:
                if node not in kernels:
                    kernel, reason = provider.kernel_for(context_of(node))
                    if kernel is None:
                        raise UnsupportedOperator(f"{provider.name} fused {_label(node)} but has no kernel for it: {reason}")
                    owner[node], kernels[node] = provider, kernel

    @staticmethod
    def _order_units(graph, owner, kernels, compiled, implicit) -> list[Unit]:
        """All units in an order where every unit follows the producers of its inputs.

        Kahn's algorithm over units, taking ready units in the graph's own node order.
        """
        unit_of: dict[ir.Node, Unit] = {}
        for unit in compiled:
            for node in unit.nodes:
                unit_of[node] = unit
        units: list[Unit] = []
        position: dict[int, int] = {}
        for node in graph:
            unit = unit_of.get(node)
            if unit is None:
                unit = unit_of[node] = Unit(owner[node], [node], kernel=kernels[node])
            if id(unit) not in position:
                position[id(unit)] = len(units)
                units.append(unit)
        waiting = [0] * len(units)
        users: list[list[int]] = [[] for _ in units]
        for index, unit in enumerate(units):
            deps = set()
            for node in unit.nodes:
                for value in list(node.inputs) + list(implicit.get(node, ())):
                    producer = value.producer() if value is not None else None
                    if producer is not None and producer in unit_of and unit_of[producer] is not unit:
                        deps.add(position[id(unit_of[producer])])
            waiting[index] = len(deps)
            for dep in deps:
                users[dep].append(index)
        ready = [i for i, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        ordered = []
        while ready:
            index = heapq.heappop(ready)
            ordered.append(units[index])
            for user in users[index]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, user)
        if len(ordered) != len(units):
            raise UnsupportedOperator("partitioning produced a cycle between fused subgraphs")
        return ordered


def _label(node: ir.Node) -> str:
    return f"'{node.name or node.op_type}' ({node.op_type})"


def _unclaimed_message(missing: list[ir.Node], context_of, declined) -> str:
    lines = []
    for node in missing:
        reasons = "; ".join(f"{p}: {why}" for p, why in declined[node].items()) or "no provider was asked"
        lines.append(f"{context_of(node).describe()} cannot run on any selected provider ({reasons})")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} nodes cannot run on any selected provider:\n  " + "\n  ".join(lines)


def fallback_count(partitioning: Partitioning) -> int:
    """Nodes the CPU provider runs because an earlier provider passed on them."""
    return sum(
        1
        for unit in partitioning.units
        if unit.provider.name == "CPUExecutionProvider"
        for node in unit.nodes
        if partitioning.declined.get(node)
    )

