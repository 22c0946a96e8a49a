"""Splitting a claimed group of nodes into pieces that can each be fused without a cycle."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import onnx_ir as ir


def predecessors(order: Sequence[ir.Node], implicit: Mapping[ir.Node, Sequence[ir.Value]]) -> dict[ir.Node, set[ir.Node]]:
    """For each node, the nodes of the same graph producing its inputs (subgraph reads included)."""
    members = set(order)
    preds: dict[ir.Node, set[ir.Node]] = {}
    for node in order:
        found = set()
        for value in list(node.inputs) + list(implicit.get(node, ())):
            producer = value.producer() if value is not None else None
            if producer is not None and producer in members:
                found.add(producer)
        preds[node] = found
    return preds


def split_acyclic(order: Sequence[ir.Node], preds: Mapping[ir.Node, Iterable[ir.Node]], group: set[ir.Node]) -> list[list[ir.Node]]:
    """Pieces of ``group`` such that no path leaves a piece and re-enters it.

    Each node of the group gets a stage: the number of times a path from the group's first
    nodes to it must leave the group. A path that leaves a piece and comes back arrives one
    stage later, so every stage is a piece that fuses without a cycle, and the pieces in
    stage order stay acyclic among themselves.
    """
    stage: dict[ir.Node, int] = {}
    outside: dict[ir.Node, int] = {}  # for nodes outside the group: highest stage reaching them
    for node in order:
        inside = [stage[p] for p in preds[node] if p in group]
        through = [outside[p] for p in preds[node] if p not in group and outside.get(p, -1) >= 0]
        if node in group:
            stage[node] = max(inside + [s + 1 for s in through] + [0])
        else:
            outside[node] = max(inside + through + [-1])
    pieces: dict[int, list[ir.Node]] = {}
    for node in order:
        if node in group:
            pieces.setdefault(stage[node], []).append(node)
    return [pieces[s] for s in sorted(pieces)]
