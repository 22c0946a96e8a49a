"""The rule API: a rule rewrites a graph in place and says how many rewrites it made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx_ir as ir

from onnxmux.core.optimizer.editing import graph_nodes


class Rule:
    """A graph rewrite with a stable ``name`` (used in reports and to disable it).

    ``apply(graph)`` rewrites ``graph`` in place and returns the number of rewrites made (0 when
    nothing matched). The optimizer calls it on the main graph and, when ``subgraphs`` is true,
    on every subgraph of control-flow nodes, so a rule only needs to handle one graph.
    """

    name: ClassVar[str] = ""
    #: Whether the optimizer also applies the rule to the bodies of If/Loop/Scan nodes.
    subgraphs: ClassVar[bool] = True
    #: The op types a rewrite can start at (None: any); the optimizer skips the rule while no
    #: node of the graph (or its subgraphs) has one of them, and a PatternRule skips other nodes.
    roots: ClassVar[frozenset[str] | None] = None

    def apply(self, graph: ir.Graph) -> int:
        """Rewrite ``graph`` in place; returns the number of rewrites made."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<rule {self.name or type(self).__name__}>"


class PatternRule(Rule):
    """A rule written as a ``match``/``rewrite`` pair, tried on every node of the graph in order.

    ``match(node)`` returns None when the node does not start (or end) the pattern, else
    whatever ``rewrite`` needs; it must not modify the graph. ``rewrite(graph, node, match)``
    then changes the graph. Nodes removed by an earlier rewrite are skipped.
    """

    def match(self, node: ir.Node) -> Any | None:
        """What ``rewrite`` needs when the pattern matches at ``node``, else None."""
        raise NotImplementedError

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """Replace the matched pattern."""
        raise NotImplementedError

    def apply(self, graph: ir.Graph) -> int:
        """Try ``match`` at every node still in the graph; ``rewrite`` each match."""
        count = 0
        for node in graph_nodes(graph, self.roots):
            if node.graph is not graph:
                continue
            found = self.match(node)
            if found is not None:
                self.rewrite(graph, node, found)
                count += 1
        return count


@dataclass
class RuleReport:
    """What one rule did during ``optimize``: its rewrites and the node counts around them.

    ``error`` is set when the rule raised or left an invalid graph; its changes were then
    rolled back (``rewrites`` is 0 and the node counts are equal).
    """

    name: str
    level: str
    rewrites: int
    nodes_before: int
    nodes_after: int
    error: str | None = None
