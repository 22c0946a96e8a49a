"""The execution plan as users see it: which provider runs each node, partitions, copies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import onnx_ir as ir

from onnxmux.partition.partitioner import Partitioning, Unit


@dataclass(frozen=True)
class Copy:
    """A value moved between devices at run time."""

    value: str
    source: str
    target: str


@dataclass
class ExecutionPlan:
    """Where every node of the (optimized) top-level graph runs, and why.

    ``to_dict()`` is the stable, documented form; ``declined`` keeps, per node that ran on a
    provider later in the list, the reason each preferred provider gave.
    """

    providers: list[str]
    nodes: list[dict[str, Any]]
    partitions: list[dict[str, Any]]
    copies: list[Copy]
    declined: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Islands moved by ``session.placement_policy`` = cost: nodes, from, to, copy_bytes, work.
    moved: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"providers", "nodes", "partitions", "copies"}`` as documented in docs/providers.md."""
        return {
            "providers": list(self.providers),
            "nodes": [dict(n) for n in self.nodes],
            "partitions": [dict(p, nodes=list(p["nodes"])) for p in self.partitions],
            "copies": [{"value": c.value, "from": c.source, "to": c.target} for c in self.copies],
        }


def build_plan(providers: Sequence[str], partitioning: Partitioning, copies: Sequence[Copy]) -> ExecutionPlan:
    """Group the units into partitions and describe every node."""
    units = partitioning.units
    partition_of = _partition_ids(units)
    partitions: dict[int, dict[str, Any]] = {}
    nodes = []
    for unit in units:
        pid = partition_of[id(unit)]
        entry = partitions.setdefault(
            pid,
            {"id": pid, "provider": unit.provider.name, "device": unit.provider.device, "kind": unit.kind, "nodes": []},
        )
        for node in unit.nodes:
            entry["nodes"].append(node.name)
            nodes.append(
                {"name": node.name, "op_type": node.op_type, "domain": node.domain or "", "provider": unit.provider.name, "partition": pid}
            )
    present = {n for u in units for n in u.nodes}
    declined = {n.name: dict(r) for n, r in partitioning.declined.items() if r and n in present}
    return ExecutionPlan(
        list(providers), nodes, [partitions[k] for k in sorted(partitions)], list(copies), declined, list(partitioning.moved)
    )


def _partition_ids(units: Sequence[Unit]) -> dict[int, int]:
    """Compiled units are partitions of their own; connected kernel nodes of one provider share one."""
    parent = {id(u): id(u) for u in units}

    def find(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    kernel_units = [u for u in units if u.kind == "kernels"]
    unit_of: dict[ir.Node, Unit] = {u.nodes[0]: u for u in kernel_units}
    for unit in kernel_units:
        for value in unit.nodes[0].inputs:
            producer = value.producer() if value is not None else None
            other = unit_of.get(producer) if producer is not None else None
            if other is not None and other.provider is unit.provider:
                parent[find(id(unit))] = find(id(other))
    ids: dict[int, int] = {}
    result = {}
    for unit in units:
        root = find(id(unit))
        result[id(unit)] = ids.setdefault(root, len(ids))
    return result
