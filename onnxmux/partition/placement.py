"""Cost-aware placement (session config entry ``session.placement_policy`` = ``cost``).

After the greedy claims, each island (connected group) of nodes a kernel provider took on a
device other than the host is weighed: the bytes its copies move (values read from another
device and values read elsewhere, initializers excluded as they are uploaded once) against the
work it does there (the provider's ``node_cost``). An island whose copies outweigh its work is
given to the next provider in the list that can run all of it, and each of its nodes records
why in the plan's ``declined``. ``greedy`` (the default) keeps onnxruntime's behaviour.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.cost import nbytes
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import HOST, ExecutionProvider, KernelProvider
from onnxmux.core.registry import KernelDef

POLICY_KEY = "session.placement_policy"
POLICIES = ("greedy", "cost")


def policy_of(config: Mapping[str, str]) -> str:
    """The session's placement policy; an unknown one raises InvalidArgument."""
    policy = config.get(POLICY_KEY, "greedy")
    if policy not in POLICIES:
        raise InvalidArgument(f"{POLICY_KEY} must be one of {', '.join(POLICIES)}, got '{policy}'")
    return policy


def islands(order: Sequence[ir.Node], owner: Mapping[ir.Node, ExecutionProvider]) -> list[list[ir.Node]]:
    """Groups of nodes connected by values, all on one non-host kernel provider, in graph order."""
    root: dict[ir.Node, ir.Node] = {}

    def find(node: ir.Node) -> ir.Node:
        while root[node] is not node:
            root[node] = root[root[node]]
            node = root[node]
        return node

    for node in order:
        provider = owner.get(node)
        if not isinstance(provider, KernelProvider) or provider.device == HOST:
            continue
        root[node] = node
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer in root and owner.get(producer) is provider:
                root[find(producer)] = find(node)
    groups: dict[ir.Node, list[ir.Node]] = {}
    for node in order:
        if node in root:
            groups.setdefault(find(node), []).append(node)
    return list(groups.values())


def copy_bytes(island: Sequence[ir.Node], owner: Mapping[ir.Node, ExecutionProvider], device: str, type_of: Callable) -> int:
    """Bytes moved per run by the copies into and out of ``island`` on ``device``."""
    members = set(island)
    total = 0
    for value in {v for n in island for v in n.inputs if v is not None and v.name}:
        producer = value.producer()
        if producer in members or value.const_value is not None:
            continue
        source = owner[producer].device if producer is not None and producer in owner else HOST
        total += nbytes(type_of(value)) if source != device else 0
    for value in (v for n in island for v in n.outputs if v.name):
        readers = {owner[u].device for u, _ in value.uses() if u not in members and u in owner}
        if value.is_graph_output():
            readers.add(HOST)
        total += nbytes(type_of(value)) * len(readers - {device})
    return total


def place_by_cost(
    providers: Sequence[ExecutionProvider],
    order: Sequence[ir.Node],
    owner: dict[ir.Node, ExecutionProvider],
    kernels: dict[ir.Node, KernelDef],
    context_of: Callable[[ir.Node], NodeContext],
    declined: dict[ir.Node, dict[str, str]],
    type_of: Callable,
) -> list[dict[str, Any]]:
    """Give each island whose copies outweigh its work to the next provider that runs all of it;
    returns the moves: ``{"nodes", "from", "to", "copy_bytes", "work"}`` each."""
    moves = []
    for island in islands(order, owner):
        provider = owner[island[0]]
        moved = copy_bytes(island, owner, provider.device, type_of)
        work = sum(provider.node_cost(context_of(n)) for n in island)
        if moved <= work:
            continue
        later = providers[providers.index(provider) + 1 :]
        for candidate in later:
            if not isinstance(candidate, KernelProvider):
                continue
            found = [candidate.kernel_for(context_of(n))[0] for n in island]
            if all(k is not None for k in found):
                why = (f"placement: its island of {len(island)} node(s) would copy {moved} bytes for "
                       f"{work:.0f} of work, so it runs on {candidate.name} ({POLICY_KEY}=cost)")
                for node, kernel in zip(island, found):
                    owner[node], kernels[node] = candidate, kernel
                    declined[node][provider.name] = why
                moves.append({"nodes": [n.name for n in island], "from": provider.name, "to": candidate.name,
                              "copy_bytes": moved, "work": work})
                break
    return moves
