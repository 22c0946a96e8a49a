"""Reading a node's attributes without onnx-ir's ``Attributes`` views.

``Attributes`` is a UserDict: its ``values()`` and ``items()`` views fetch each item through
Python-level methods, which costs several times more per item than the dict inside it, and
session creation walks the attributes of every node several times.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import onnx_ir as ir


def attribute_values(node: ir.Node) -> Iterable[ir.Attr]:
    """A node's attributes."""
    return _attribute_dict(node).values()


def attribute_items(node: ir.Node) -> Iterable[tuple[str, ir.Attr]]:
    """A node's (name, attribute) pairs."""
    return _attribute_dict(node).items()


def subgraphs_of(node: ir.Node) -> list[ir.Graph]:
    """The graphs held in a node's GRAPH and GRAPHS attributes (references to a function's
    attributes hold none)."""
    graphs: list[ir.Graph] = []
    if not node.attributes:
        return graphs
    for attr in attribute_values(node):
        if attr.is_ref():
            continue
        if attr.type == ir.AttributeType.GRAPH:
            graphs.append(attr.value)
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.extend(attr.value)
    return graphs


def _attribute_dict(node: ir.Node) -> Mapping[str, ir.Attr]:
    attributes = node.attributes
    return getattr(attributes, "data", attributes)
