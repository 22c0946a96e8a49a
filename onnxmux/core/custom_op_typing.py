"""Typing custom ops at load time: ONNX's shape inference knows nothing of their domains.

Between passes of ONNX's inference, each custom node whose inputs are typed gets its outputs'
element types (from the op's type constraints) and shapes (from its shape function), checked
against what the model declares; the next pass then types the nodes after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from onnxmux.core.errors import InvalidGraph
from onnxmux.core.types import dtype_name, numpy_dtype

if TYPE_CHECKING:
    from onnxmux.core.custom_ops import CustomOp

Shape = tuple  # of int (static), str (symbolic) or None (unknown) dims
#: ``lookup(domain, op_type, opset)``: the custom op serving a node, or None.
Lookup = Callable[[str, str, int], "CustomOp | None"]
#: Inference passes at most after the first (each types the custom ops whose inputs the last typed).
MAX_SHAPE_PASSES = 8


def format_shape(shape: Shape | None) -> str:
    """``[batch, 3]`` for messages (``?`` for an unknown dim)."""
    return "unknown" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def infer_custom_shapes(
    proto: onnx.ModelProto, lookup: Lookup, infer: Callable[[onnx.ModelProto], onnx.ModelProto]
) -> onnx.ModelProto:
    """Run ONNX's inference (``infer``), typing the custom nodes between passes until none is left."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    done: set[tuple[str, ...]] = set()
    proto = infer(proto)
    for _ in range(MAX_SHAPE_PASSES):
        if not _type_custom_outputs(proto.graph, lookup, opsets, done, {}):
            break
        proto = infer(proto)
    return proto


def _type_custom_outputs(
    graph: onnx.GraphProto,
    lookup: Lookup,
    opsets: Mapping[str, int],
    done: set[tuple[str, ...]],
    outer: dict[str, onnx.TypeProto],
) -> int:
    """Type the outputs of the custom nodes of ``graph`` (and its subgraphs) whose inputs are typed."""
    types = dict(outer)
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type
    for tensor in graph.initializer:
        types.setdefault(tensor.name, onnx.helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims)))
    typed = 0
    for node in graph.node:
        op = lookup(node.domain, node.op_type, opsets.get(node.domain, 1))
        if op is not None and tuple(node.output) not in done and all(not n or n in types for n in node.input):
            done.add(tuple(node.output))
            typed += _type_node(graph, node, op, types)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                typed += _type_custom_outputs(sub, lookup, opsets, done, types)
    return typed


def _type_node(graph: onnx.GraphProto, node: onnx.NodeProto, op: CustomOp, types: dict[str, onnx.TypeProto]) -> int:
    """Write the types of one custom node's outputs; InvalidGraph when they contradict the model's."""
    where = f"node '{node.name or node.op_type}' ({op.label})"
    wrong = op.arity_error(len(node.input), len(node.output))
    if wrong:
        raise InvalidGraph(f"{where}: {wrong}")
    inputs = [types[n].tensor_type if n else None for n in node.input]
    bound, reason = op.bind([numpy_dtype(t.elem_type) if t is not None else None for t in inputs])
    if reason is not None:
        return 0  # the providers decline it, and session creation names the reason
    dtypes = op.output_dtypes(bound)
    shapes: list[Shape | None] = [None] * len(op.outputs)
    if op.shape is not None:
        attrs = op.attribute_values(_proto_attributes(node), lambda m: InvalidGraph(f"{where}: {m}"))
        try:
            result = op.shape(*[_proto_shape(t) if t is not None else None for t in inputs], **attrs)
        except Exception as exc:
            raise InvalidGraph(f"{where}: the shape function raised {type(exc).__name__}: {exc}") from exc
        shapes = _shape_results(result, len(op.outputs), where)
    declared = {info.name: info for info in (*graph.value_info, *graph.output)}
    count = 0
    for name, dtype, shape in zip(node.output, dtypes, shapes):
        if not name:
            continue
        info = declared.get(name)
        tensor = info.type.tensor_type if info is not None and info.type.HasField("tensor_type") else None
        _check_declared(where, name, dtype, shape, tensor)
        elem = (
            dtype
            if dtype is not None
            else (numpy_dtype(tensor.elem_type) if tensor is not None and tensor.elem_type else None)
        )
        if elem is None:
            continue
        if shape is None and tensor is not None and tensor.HasField("shape"):
            shape = _proto_shape(tensor)
        type_proto = onnx.helper.make_tensor_type_proto(
            ir.DataType.from_numpy(elem).value, list(shape) if shape is not None else None
        )
        if info is None:
            graph.value_info.append(onnx.helper.make_value_info(name, type_proto))
        else:
            info.type.CopyFrom(type_proto)
        types[name] = type_proto
        count += 1
    return count


def _check_declared(where: str, name: str, dtype: np.dtype | None, shape: Shape | None, tensor: Any) -> None:
    if tensor is None:
        return
    if dtype is not None and tensor.elem_type and numpy_dtype(tensor.elem_type) != dtype:
        raise InvalidGraph(
            f"{where}: output '{name}' is tensor({dtype_name(dtype)}) by the op's type constraints, "
            f"but the model declares tensor({dtype_name(numpy_dtype(tensor.elem_type))})"
        )
    if shape is None or not tensor.HasField("shape"):
        return
    model_shape = _proto_shape(tensor)
    if len(model_shape) != len(shape):
        raise InvalidGraph(
            f"{where}: the shape function gives output '{name}' rank {len(shape)} ({format_shape(shape)}), "
            f"but the model declares rank {len(model_shape)} ({format_shape(model_shape)})"
        )
    for axis, (mine, theirs) in enumerate(zip(shape, model_shape)):
        if isinstance(mine, int) and isinstance(theirs, int) and mine != theirs:
            raise InvalidGraph(
                f"{where}: the shape function gives output '{name}' dimension {axis} = {mine} ({format_shape(shape)}), "
                f"but the model declares {theirs} ({format_shape(model_shape)})"
            )


def _shape_results(result: Any, outputs: int, where: str) -> list[Shape | None]:
    """A shape function's result as one shape (or None) per output; InvalidGraph when malformed."""
    items = [result] if outputs == 1 else result
    if not isinstance(items, (list, tuple)) or len(items) != outputs:
        raise InvalidGraph(f"{where}: the shape function must return a list of {outputs} shapes, got {result!r}")
    shapes = []
    for item in items:
        if item is None:
            shapes.append(None)
            continue
        if not isinstance(item, (list, tuple)) or not all(
            d is None or isinstance(d, str) or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0)
            for d in item
        ):
            raise InvalidGraph(
                f"{where}: the shape function returned {item!r}; a shape is a list of dims (int >= 0, str or None)"
            )
        shapes.append(tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in item))
    return shapes


def _proto_shape(tensor: Any) -> Shape | None:
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)


def _proto_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A NodeProto's attributes as the kernel sees them (str for strings, numpy for tensors)."""
    values = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, list):
            value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        values[attr.name] = value
    return values
