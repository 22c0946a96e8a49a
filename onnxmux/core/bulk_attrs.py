"""Long INTS and FLOATS attributes read in bulk.

Tree ensembles keep their whole forest in list attributes (hundreds of thousands of numbers),
and onnx-ir converts list attributes item by item in Python. The loader takes the long ones out
of the proto before building the IR and attaches them afterwards as numpy arrays, which kernels
read without converting again (``NodeContext.array``).
"""

from __future__ import annotations

from typing import Any, Collection

import numpy as np
import onnx
import onnx_ir as ir

#: List attributes with at least this many items are read in bulk.
BULK_ITEMS = 1024
_DTYPES = {onnx.AttributeProto.INTS: np.int64, onnx.AttributeProto.FLOATS: np.float32}


class BulkAttr(ir.Attr):
    """An INTS or FLOATS attribute over a read-only 1-D numpy array; the tuple that onnx-ir
    attributes hold as their value is made only when something asks for it."""

    __slots__ = ("array", "_items")

    def __init__(self, name: str, kind: ir.AttributeType, array: np.ndarray, doc_string: str | None = None) -> None:
        super().__init__(name, kind, (), doc_string=doc_string)
        array.flags.writeable = False
        self.array = array
        self._items: tuple | None = None

    @property
    def value(self) -> Any:
        """The items as a tuple of Python numbers, like any onnx-ir list attribute."""
        if self._items is None:
            self._items = tuple(self.array.tolist())
        return self._items


#: Ops whose ONNX shape inference reads none of their long list attributes (the forest):
#: those leave the proto before inference, so its copy for onnx's C++ inference stays small.
INFERENCE_IGNORES = frozenset({("ai.onnx.ml", "TreeEnsembleClassifier"), ("ai.onnx.ml", "TreeEnsembleRegressor")})


def detach_long_lists(
    graph: onnx.GraphProto, only: Collection[tuple[str, str]] | None = None
) -> list[tuple[int, onnx.AttributeProto]]:
    """Take the long INTS/FLOATS attributes off the graph's nodes (not its subgraphs'), or off
    those of the (domain, op type)s ``only`` names, each with its node's index, for
    ``attach_long_lists`` once the IR is built. The proto keeps them no more."""
    taken: list[tuple[int, onnx.AttributeProto]] = []
    for index, node in enumerate(graph.node):
        if only is not None and (node.domain, node.op_type) not in only:
            continue
        long = [
            i
            for i, attr in enumerate(node.attribute)
            if attr.type in _DTYPES and not attr.ref_attr_name and len(attr.ints) + len(attr.floats) >= BULK_ITEMS
        ]
        taken.extend((index, node.attribute.pop(i)) for i in reversed(long))
    return taken


def attach_long_lists(graph: ir.Graph, taken: list[tuple[int, onnx.AttributeProto]]) -> None:
    """Give the IR graph's nodes (in the proto's order) the attributes ``detach_long_lists`` took, as BulkAttrs."""
    if not taken:
        return
    nodes = list(graph)
    for index, attr in taken:
        values = attr.ints if attr.type == onnx.AttributeProto.INTS else attr.floats
        array = np.array(values, dtype=_DTYPES[attr.type])
        kind = ir.AttributeType(attr.type)
        nodes[index].attributes[attr.name] = BulkAttr(attr.name, kind, array, attr.doc_string or None)
