"""Long INTS, FLOATS and STRINGS attributes read in bulk.

Tree ensembles keep their whole forest in list attributes (hundreds of thousands of numbers),
and onnx-ir converts list attributes item by item in Python. The loader takes the long ones out
of the proto before building the IR and attaches them afterwards as numpy arrays, which kernels
read without converting again (``NodeContext.array``).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnxmux.core.errors import InvalidGraph

#: List attributes with at least this many items are read in bulk.
BULK_ITEMS = 1024
_DTYPES = {onnx.AttributeProto.INTS: np.int64, onnx.AttributeProto.FLOATS: np.float32, onnx.AttributeProto.STRINGS: object}


class BulkAttr(ir.Attr):
    """An INTS, FLOATS or STRINGS attribute over a read-only 1-D numpy array (of UTF-8 bytes
    for STRINGS); the tuple that onnx-ir attributes hold as their value (of str for STRINGS) is
    made only when something asks for it."""

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
            items = self.array.tolist()
            if self.type == ir.AttributeType.STRINGS:
                items = [item.decode("utf-8") for item in items]
            self._items = tuple(items)
        return self._items

    def content_key(self) -> Hashable:
        """A hashable form of the items that does not build the tuple of Python numbers."""
        if self.array.dtype == object:
            return tuple(self.array.tolist())
        return (self.array.dtype.str, self.array.tobytes())


#: Ops whose ONNX shape inference reads none of their forest attributes (those named with
#: these prefixes; class labels, which type the outputs, are not among them): those leave the
#: proto before inference, so its copy for onnx's C++ inference stays small.
INFERENCE_IGNORES = {
    ("ai.onnx.ml", "TreeEnsembleClassifier"): ("nodes_", "class_"),
    ("ai.onnx.ml", "TreeEnsembleRegressor"): ("nodes_", "target_"),
}


def is_bulk(attr: Any) -> bool:
    """Whether an attribute is a BulkAttr (a type test: ``isinstance`` against an ``ir.Attr``
    subclass goes through typing's protocol check, several microseconds per attribute)."""
    return type(attr) is BulkAttr


def detach_forests(proto: onnx.ModelProto) -> list[tuple[int, onnx.AttributeProto]]:
    """``detach_long_lists`` of the forest attributes ``INFERENCE_IGNORES`` names (none when the
    model does not import ai.onnx.ml), before shape inference."""
    if not any(o.domain == "ai.onnx.ml" for o in proto.opset_import):
        return []
    return detach_long_lists(proto.graph, INFERENCE_IGNORES)


def detach_long_lists(
    graph: onnx.GraphProto, only: Mapping[tuple[str, str], tuple[str, ...]] | None = None
) -> list[tuple[int, onnx.AttributeProto]]:
    """Take the long list attributes off the graph's nodes (not its subgraphs'), or only those of
    the (domain, op type)s ``only`` names whose names start with its prefixes, each with its
    node's index, for ``attach_long_lists`` once the IR is built. The proto keeps them no more."""
    taken: list[tuple[int, onnx.AttributeProto]] = []
    for index, node in enumerate(graph.node):
        prefixes = None if only is None else only.get((node.domain, node.op_type))
        if only is not None and prefixes is None:
            continue
        long = [
            i
            for i, attr in enumerate(node.attribute)
            if attr.type in _DTYPES
            and not attr.ref_attr_name
            and (prefixes is None or attr.name.startswith(prefixes))
            and len(attr.ints) + len(attr.floats) + len(attr.strings) >= BULK_ITEMS
        ]
        taken.extend((index, node.attribute.pop(i)) for i in reversed(long))
    return taken


def attach_long_lists(graph: ir.Graph, taken: list[tuple[int, onnx.AttributeProto]]) -> None:
    """Give the IR graph's nodes (in the proto's order) the attributes ``detach_long_lists`` took,
    as BulkAttrs; a STRINGS item that is not UTF-8 is an InvalidGraph."""
    if not taken:
        return
    nodes = list(graph)
    for index, attr in taken:
        if attr.type == onnx.AttributeProto.STRINGS:
            array = np.empty(len(attr.strings), dtype=object)
            array[:] = list(attr.strings)
            _check_utf8(nodes[index], attr.name, array)
        else:
            array = np.array(attr.ints if attr.type == onnx.AttributeProto.INTS else attr.floats, dtype=_DTYPES[attr.type])
        kind = ir.AttributeType(attr.type)
        nodes[index].attributes[attr.name] = BulkAttr(attr.name, kind, array, attr.doc_string or None)


def _check_utf8(node: ir.Node, name: str, items: np.ndarray) -> None:
    """All items are UTF-8 (checked at once: NUL never continues a character, so the joined
    bytes decode exactly when every item does)."""
    try:
        b"\x00".join(items.tolist()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidGraph(f"node '{node.name or node.op_type}': attribute '{name}' holds a string that is not valid UTF-8") from None
