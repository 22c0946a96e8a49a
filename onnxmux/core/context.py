"""What a kernel factory sees of its node: attributes, static types, opset, subgraphs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core.bulk_attrs import is_bulk
from onnxmux.core.errors import InvalidGraph
from onnxmux.core.node_attributes import attribute_items
from onnxmux.core.types import TypeInfo

if TYPE_CHECKING:
    from onnxmux.core.executor import SubgraphRunner

_REQUIRED = object()


class NodeContext:
    """A node as its kernel factory sees it, built once at session creation.

    ``inputs`` and ``outputs`` hold the static TypeInfo of each explicit input and output
    (None where an optional one is absent). ``implicit_inputs`` names the outer-scope values
    read by the node's subgraphs; the executor passes them after the explicit inputs.
    """

    def __init__(
        self,
        node: ir.Node,
        opset: int,
        inputs: Sequence[TypeInfo | None],
        outputs: Sequence[TypeInfo | None],
        implicit_inputs: Sequence[str] = (),
        compile_subgraph: Callable[[ir.Graph], SubgraphRunner] | None = None,
        constants: Sequence[Any] = (),
    ) -> None:
        self.node = node
        self.name = node.name or node.op_type
        self.op_type = node.op_type
        self.domain = node.domain or ""
        self.opset = opset
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.num_inputs = len(self.inputs)
        self.num_outputs = len(self.outputs)
        self.implicit_inputs = tuple(implicit_inputs)
        self.constants = tuple(constants) or (None,) * self.num_inputs
        self._compile_subgraph = compile_subgraph
        #: Converted attribute values, by name; each is converted when first asked for (contexts
        #: are built for every node a provider is asked about, fused-away ones included).
        self._attrs: dict[str, Any] = {}
        #: The IR attributes not converted yet.
        self._pending: dict[str, ir.Attr] = dict(attribute_items(node))

    @property
    def attrs(self) -> dict[str, Any]:
        """Every attribute's value, converted to Python/numpy, by name."""
        pending = self._pending
        if pending:
            for name in list(pending):
                self._attrs[name] = _attr_value(pending.pop(name))
        return self._attrs

    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        """An attribute's value, converted to Python/numpy; ``default`` when absent."""
        attrs = self._attrs
        if name in attrs:
            return attrs[name]
        found = self._pending.pop(name, None)
        if found is not None:
            value = attrs[name] = _attr_value(found)
            return value
        if default is _REQUIRED:
            raise self.error(f"required attribute '{name}' is missing")
        return default

    def array(self, name: str, dtype: Any) -> np.ndarray:
        """A list attribute as a 1-D read-only array of ``dtype`` (empty when absent), without the
        per-item conversion when the loader read it in bulk."""
        attr = self.node.attributes.get(name)
        if is_bulk(attr):
            return attr.array.astype(dtype, copy=False)
        array = np.asarray(self.attr(name, ()), dtype=dtype).ravel()
        array.flags.writeable = False
        return array

    def utf8_strings(self, name: str) -> list[bytes]:
        """A STRINGS attribute's items as UTF-8 bytes (empty when absent), without decoding
        them when the loader read them in bulk."""
        attr = self.node.attributes.get(name)
        if is_bulk(attr):
            return attr.array.tolist()
        return [item.encode("utf-8") for item in self.attr(name, ())]

    def has_output(self, i: int) -> bool:
        """Whether output ``i`` exists and is consumed (optional outputs may be left out)."""
        return i < self.num_outputs and self.outputs[i] is not None

    def constant(self, i: int) -> Any:
        """The value of input ``i`` when it is an initializer known at session creation, else None."""
        return self.constants[i] if i < len(self.constants) else None

    def subgraph(self, attr_name: str) -> SubgraphRunner:
        """The compiled subgraph held in a graph attribute, ready to run."""
        graph = self.attr(attr_name)
        if not isinstance(graph, ir.Graph):
            raise self.error(f"attribute '{attr_name}' is not a graph")
        return self.compile_graph(graph)

    def compile_graph(self, graph: ir.Graph) -> SubgraphRunner:
        """Compile any graph in this node's scope (a subgraph, or a function body built for it)."""
        if self._compile_subgraph is None:
            raise self.error("subgraphs cannot be compiled in this context")
        return self._compile_subgraph(graph)

    def describe(self) -> str:
        """``node 'name' (Op, domain, opset N)`` for messages."""
        domain = self.domain or "ai.onnx"
        return f"node '{self.name}' ({self.op_type}, {domain}, opset {self.opset})"

    def error(self, message: str) -> InvalidGraph:
        """An InvalidGraph error that names this node."""
        return InvalidGraph(f"{self.describe()}: {message}")


def _attr_value(attr: ir.Attr) -> Any:
    """An IR attribute as a plain value: ints, floats, str, lists, numpy arrays, or ir.Graph."""
    kind = attr.type
    if is_bulk(attr):
        return list(attr.value)
    value = attr.value
    if kind == ir.AttributeType.TENSOR:
        return tensor_to_numpy(value)
    if kind == ir.AttributeType.TENSORS:
        return [tensor_to_numpy(t) for t in value]
    if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(value)
    if kind == ir.AttributeType.GRAPHS:
        return list(value)
    return value


def tensor_to_numpy(tensor: ir.TensorProtocol) -> np.ndarray:
    """A tensor's data as a numpy array (object array of str for string tensors)."""
    array = tensor.numpy()
    if array.dtype == object or array.dtype.kind == "S":
        flat = [item.decode("utf-8") if isinstance(item, bytes) else item for item in array.ravel().tolist()]
        array = np.array(flat, dtype=object).reshape(array.shape)
    return array
