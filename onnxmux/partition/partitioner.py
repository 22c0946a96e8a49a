"""Priority partitioning: providers claim nodes in the user's order; the CPU takes the rest.

A kernel-based provider claims single nodes it has a kernel for. A compile-based provider
is shown the nodes nobody took yet and returns groups; each group is split into pieces that
fuse without a cycle and compiled, and a piece whose compile raises falls back to the next
provider with a warning. A hook that raises follows the rule in ``failures.py``.
"""

from __future__ import annotations

import heapq
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import EPFail, OnnxMuxError, UnsupportedOperator
from onnxmux.core.provider import CompileProvider, ExecutionProvider, KernelProvider
from onnxmux.core.registry import KernelDef
from onnxmux.partition.convex import predecessors, split_acyclic
from onnxmux.partition.epcontext import CONTEXT_OP, context_blob, context_provider, context_subgraph, is_context_node
from onnxmux.partition.failures import FailureRule, label, labels
from onnxmux.partition.placement import place_by_cost
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
    #: Islands the cost placement policy gave to another provider (see placement.py).
    moved: list[dict[str, Any]] = field(default_factory=list)


class Partitioner:
    """Assigns the nodes of one graph to providers."""

    def __init__(
        self,
        providers: Sequence[ExecutionProvider],
        opsets: Mapping[str, int],
        rewrite: bool = False,
        failures: FailureRule | None = None,
        policy: str = "greedy",
        type_of: Callable[[ir.Value], Any] | None = None,
    ) -> None:
        self.providers = list(providers)
        self.opsets = dict(opsets)
        self.rewrite = rewrite
        self.failures = failures or FailureRule({})
        self.policy = policy
        self.type_of = type_of

    def partition(
        self,
        graph: ir.Graph,
        context_of: Callable[[ir.Node], NodeContext],
        implicit: Mapping[ir.Node, Sequence[ir.Value]],
    ) -> Partitioning:
        """Claim every node of ``graph``; raises UnsupportedOperator listing the unclaimed ones."""
        order = list(graph)
        preds: dict[ir.Node, set[ir.Node]] | None = None  # for compile providers' claims only
        owner: dict[ir.Node, ExecutionProvider] = {}
        kernels: dict[ir.Node, KernelDef] = {}
        compiled: list[Unit] = []
        declined: dict[ir.Node, dict[str, str]] = {n: {} for n in order}
        failed: set[ir.Node] = set()
        for unit in self._context_units(graph, order, implicit, declined, failed):
            compiled.append(unit)
            owner[unit.nodes[0]] = unit.provider
        for position, provider in enumerate(self.providers):
            candidates = [n for n in order if n not in owner]
            if not candidates:
                break
            if isinstance(provider, KernelProvider):
                last = position == len(self.providers) - 1
                self._kernel_claims(provider, candidates, context_of, owner, kernels, declined, failed, last)
            elif isinstance(provider, CompileProvider):
                preds = predecessors(order, implicit) if preds is None else preds
                for unit in self._compile_claims(provider, graph, order, preds, candidates, implicit, declined, failed):
                    compiled.append(unit)
                    owner.update((n, provider) for n in unit.nodes)
        moved = []
        if self.policy == "cost":
            moved = place_by_cost(self.providers, order, owner, kernels, context_of, declined, self.type_of)
        missing = [n for n in order if n not in owner]
        if missing:
            error = EPFail if failed.intersection(missing) else UnsupportedOperator
            raise error(_unclaimed_message(missing, context_of, declined))
        if self.rewrite:
            self._rewrite(graph, owner, kernels, context_of)
        return Partitioning(self._order_units(graph, owner, kernels, compiled, implicit), declined, moved)

    def _kernel_claims(self, provider, candidates, context_of, owner, kernels, declined, failed, last) -> None:
        """Let a kernel provider take the candidates it has a kernel for; a ``supports`` that
        raises sends its nodes on (one warning for all of them)."""
        errors: dict[ir.Node, Exception] = {}
        for node in candidates:
            try:
                kernel, reason = provider.kernel_for(context_of(node))
            except Exception as exc:
                if last and isinstance(exc, OnnxMuxError):
                    raise  # a deliberate error (a bad attribute) from the provider of last resort
                errors[node] = exc
                continue
            if kernel is None:
                declined[node][provider.name] = reason or "declined"
            else:
                owner[node], kernels[node] = provider, kernel
        if errors:
            nodes = list(errors)
            reason = self.failures.hook_failed(provider, "supports", nodes, errors[nodes[0]])
            for node in nodes:
                declined[node][provider.name] = reason
            failed.update(nodes)

    def _compile_claims(
        self,
        provider: CompileProvider,
        graph: ir.Graph,
        order: list[ir.Node],
        preds: dict[ir.Node, set[ir.Node]],
        candidates: list[ir.Node],
        implicit: Mapping[ir.Node, Sequence[ir.Value]],
        declined: dict[ir.Node, dict[str, str]],
        failed: set[ir.Node],
    ) -> list[Unit]:
        allowed = set(candidates)
        try:
            groups = provider.claim(graph, candidates)
        except Exception as exc:
            reason = self.failures.hook_failed(provider, "claim", candidates, exc)
            for node in candidates:
                declined[node][provider.name] = reason
            failed.update(candidates)
            return []
        taken: set[ir.Node] = set()
        units = []
        for group in groups:
            valid = set()
            for node in group:
                if node not in allowed:
                    warnings.warn(f"{provider.name} claimed a node that is not in its candidates ({label(node)}); ignored", stacklevel=2)
                elif node in taken or node in valid:
                    warnings.warn(f"{provider.name} claimed {label(node)} twice; the second claim is ignored", stacklevel=2)
                else:
                    valid.add(node)
            taken |= valid
            for piece in split_acyclic(order, preds, valid):
                unit = self._compile_piece(provider, graph, piece, implicit, declined, failed)
                if unit is not None:
                    units.append(unit)
        for node in candidates:
            if node not in taken:
                declined[node].setdefault(provider.name, provider.explain(node))
        return units

    def _context_units(self, graph, order, implicit, declined, failed) -> list[Unit]:
        """EPContext nodes (partitions compiled by an earlier session), loaded by the provider
        that made them; nothing else can run one."""
        units = []
        for node in order:
            if not is_context_node(node):
                continue
            provider = context_provider(node, self.providers)
            if provider is None:
                source = node.attributes["source"].value if "source" in node.attributes else "?"
                declined[node][CONTEXT_OP] = f"compiled by {source}, which this session does not use"
                continue
            unit = self._compile_piece(provider, graph, [node], implicit, declined, failed, "import_compiled")
            if unit is not None:
                units.append(unit)
        return units

    def _compile_piece(self, provider, graph, piece, implicit, declined, failed, hook="compile") -> Unit | None:
        try:
            if hook == "compile":
                subgraph = extract(piece, graph, self.opsets, implicit)
                function = provider.compile(subgraph)
            else:
                blob, subgraph = context_blob(piece[0], provider), context_subgraph(piece[0], graph, self.opsets, implicit)
                function = provider.import_compiled(blob, subgraph)
        except Exception as exc:
            reason = self.failures.hook_failed(provider, hook, piece, exc)
            for node in piece:
                declined[node][provider.name] = reason
            failed.update(piece)
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
            try:
                after = provider.rewrite_partition(graph, mine)
            except Exception as exc:
                after = self._rewrite_failed(provider, graph, mine, owner, exc)
            for node in set(mine) - set(after):
                owner.pop(node, None)
                kernels.pop(node, None)
            for node in after:
                if node not in kernels:
                    kernel, reason = provider.kernel_for(context_of(node))
                    if kernel is None:
                        raise UnsupportedOperator(f"{provider.name} fused {label(node)} but has no kernel for it: {reason}")
                    owner[node], kernels[node] = provider, kernel

    def _rewrite_failed(self, provider, graph, mine, owner, exc) -> list[ir.Node]:
        """The nodes a provider keeps, unfused, after its ``rewrite_partition`` raised; a graph it
        left half-edited cannot be trusted, so that is an EPFail."""
        self.failures.hook_failed(provider, "rewrite_partition", mine, exc, f"they stay on {provider.name}, unfused")
        kept = set(mine)
        if any(n.graph is not graph for n in mine) or any(n not in owner and n not in kept for n in graph):
            raise EPFail(f"{provider.name}.rewrite_partition raised after editing the graph ({labels(mine)})") from exc
        return mine

    @staticmethod
    def _order_units(graph, owner, kernels, compiled, implicit) -> list[Unit]:
        """All units in an order where every unit follows the producers of its inputs.

        Kahn's algorithm over units, taking ready units in the graph's own node order; that order
        itself when every unit is one node and no node reads a later node's output.
        """
        if not compiled and _in_graph_order(graph, owner, implicit):
            return [Unit(owner[node], [node], kernel=kernels[node]) for node in graph]
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


def _in_graph_order(graph: ir.Graph, owner: Mapping[ir.Node, Any], implicit: Mapping[ir.Node, Sequence[ir.Value]]) -> bool:
    """Whether every node of ``graph`` follows the producers (in ``owner``) of the values it reads."""
    done: set[ir.Node] = set()
    for node in graph:
        for value in [*node.inputs, *implicit.get(node, ())]:
            producer = value.producer() if value is not None else None
            if producer is not None and producer not in done and producer in owner:
                return False
        done.add(node)
    return True


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

