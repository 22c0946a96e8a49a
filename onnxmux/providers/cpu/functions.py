"""Operators without a kernel run through the function body their ONNX schema defines.

``function_kernel(ctx)`` builds, for one node, the schema's function body (plain, or built for
the node's attributes and input types by a context-dependent builder), expands it into a graph
whose inputs are the node's inputs and outer-scope values and whose outputs are the node's
outputs, and returns a kernel that compiles that graph once and runs it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import onnx
import onnx.inliner
import onnx.shape_inference
import onnx_ir as ir
from onnx import helper

from onnxmux.core.compiler import free_values_of_node
from onnxmux.core.context import NodeContext
from onnxmux.core.loader import name_nodes
from onnxmux.core.registry import KernelDef
from onnxmux.core.types import TypeInfo, type_info

logger = logging.getLogger("onnxmux")

#: The private domain the call is renamed into, so that the inliner sees a model-local function.
_CALL_DOMAIN = "onnxmux.function"


def function_kernel(ctx: NodeContext) -> KernelDef | None:
    """A kernel running the node through its schema's function body, or None when the schema
    defines none at the node's opset.

    When a body exists but cannot be expanded for this node, the kernel's ``supports`` check
    gives the reason (and its factory raises it as an InvalidGraph).
    """
    schema = _schema(ctx)
    if schema is None:
        return None
    try:
        function = _function_proto(ctx, schema)
    except Exception as exc:  # a context-dependent builder rejected the node's types or attributes
        return _failing_kernel(ctx, schema.since_version, f"its function body cannot be built: {exc}")
    if function is None:
        return None
    try:
        graph, order = _expand(ctx, schema, function)
    except Exception as exc:
        return _failing_kernel(ctx, schema.since_version, f"its function body cannot be expanded: {exc}")
    positions = [i for i, v in enumerate(ctx.node.outputs) if v is not None and v.name]
    output_count = len(ctx.node.outputs)

    def factory(node_ctx: NodeContext, xp: Any) -> Callable[..., tuple]:
        """Compile the expanded function body once; each run feeds it the node's inputs and
        outer values and returns its outputs in the node's output positions."""
        body = node_ctx.compile_graph(graph)
        no_outer: tuple = ()

        def run(*args):
            outs = body([args[i] for i in order], no_outer)
            if len(positions) == output_count:
                return tuple(outs)
            result: list[Any] = [None] * output_count
            for position, value in zip(positions, outs):
                result[position] = value
            return tuple(result)

        return run

    return KernelDef(ctx.op_type, ctx.domain, schema.since_version, factory)


def _schema(ctx: NodeContext) -> onnx.defs.OpSchema | None:
    """The node's schema at its opset when it defines a (context-dependent) function body."""
    if not onnx.defs.has(ctx.op_type, ctx.domain):
        return None
    try:
        schema = onnx.defs.get_schema(ctx.op_type, max_inclusive_version=ctx.opset, domain=ctx.domain)
    except onnx.defs.SchemaError:
        return None
    if schema.deprecated or not (schema.has_function or schema.has_context_dependent_function):
        return None
    return schema


def _failing_kernel(ctx: NodeContext, since: int, reason: str) -> KernelDef:
    """A kernel that declines the node with ``reason`` (and raises it if set up anyway)."""

    def factory(node_ctx: NodeContext, xp: Any) -> Callable[..., Any]:
        """Refuse the node: its function body cannot run."""
        raise node_ctx.error(reason)

    return KernelDef(ctx.op_type, ctx.domain, since, factory, supports=lambda _: reason)


def _node_proto(ctx: NodeContext, schema: onnx.defs.OpSchema) -> onnx.NodeProto:
    """The node as a NodeProto, with the schema's default for every attribute it leaves out
    (function bodies reference attributes by name and carry no defaults of their own)."""
    node = ir.serde.serialize_node(ctx.node)
    present = {a.name for a in node.attribute}
    for name, attribute in schema.attributes.items():
        default = attribute.default_value
        if name not in present and default.type != onnx.AttributeProto.UNDEFINED:
            filled = node.attribute.add()
            filled.CopyFrom(default)
            filled.name = name
    return node


def _function_proto(ctx: NodeContext, schema: onnx.defs.OpSchema) -> onnx.FunctionProto | None:
    """The schema's function body for this node: the one written for the newest opset not above
    the node's (the inliner converts it to the node's opset); None when there is none."""
    if schema.has_function:
        version = _newest(schema.function_opset_versions, ctx.opset)
        data = schema.get_function_with_opset_version(version) if version else b""
    else:
        version = _newest(schema.context_dependent_function_opset_versions, ctx.opset)
        types = [_type_proto(t).SerializeToString() for t in ctx.inputs]
        node = _node_proto(ctx, schema).SerializeToString()
        data = schema.get_context_dependent_function_with_opset_version(version, node, types) if version else b""
    return onnx.FunctionProto.FromString(data) if data else None


def _newest(versions: list[int], opset: int) -> int | None:
    """The largest of ``versions`` not above ``opset``."""
    return max((v for v in versions if v <= opset), default=None)


def _expand(
    ctx: NodeContext, schema: onnx.defs.OpSchema, function: onnx.FunctionProto
) -> tuple[ir.Graph, list[int]]:
    """The function body as a graph, and for each of its inputs the position of its value among
    the kernel's arguments (explicit inputs, then outer-scope values).

    A one-node model calling the body as a model-local function is inlined by onnx (which also
    converts the body to the model's opset), typed by shape inference, then loaded as IR.
    """
    call = _node_proto(ctx, schema)
    call.domain = function.domain = _CALL_DOMAIN
    function.name = call.op_type
    outer = {v.name: v for v in free_values_of_node(ctx.node)}
    sources = [(v.name, i, ctx.inputs[i]) for i, v in enumerate(ctx.node.inputs) if v is not None and v.name]
    first_outer = len(ctx.node.inputs)
    sources += [(name, first_outer + j, type_info(outer.get(name))) for j, name in enumerate(ctx.implicit_inputs)]
    inputs, order, seen = [], [], set()
    for name, position, info in sources:
        if name not in seen:
            seen.add(name)
            inputs.append(helper.make_value_info(name, _type_proto(info)))
            order.append(position)
    outputs = [
        helper.make_value_info(v.name, _type_proto(t))
        for v, t in zip(ctx.node.outputs, ctx.outputs)
        if v is not None and v.name
    ]
    opsets = {o.domain: o.version for o in function.opset_import}
    opsets[ctx.domain] = ctx.opset
    opsets[_CALL_DOMAIN] = 1
    model = helper.make_model(
        helper.make_graph([call], f"{ctx.op_type}_function", inputs, outputs),
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        functions=[function],
    )
    model = onnx.inliner.inline_local_functions(model, convert_version=True)
    if any(n.domain == _CALL_DOMAIN for n in model.graph.node):
        raise ValueError("onnx's inliner left the call in place")
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception as exc:  # static types help kernels but are not required
        logger.debug("shape inference of the function body of %s failed: %s", ctx.describe(), exc)
    graph = ir.from_proto(model).graph
    name_nodes(graph)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        node.name = f"{ctx.name}/{node.name}"
    return graph, order


def _type_proto(info: TypeInfo | None) -> onnx.TypeProto:
    """A TypeInfo as an ONNX TypeProto; an empty one where the type is unknown."""
    if info is None:
        return onnx.TypeProto()
    if info.kind == "tensor" and info.dtype is not None:
        try:
            elem_type = ir.DataType.from_numpy(info.dtype).value
        except (TypeError, ValueError):
            return onnx.TypeProto()
        return helper.make_tensor_type_proto(elem_type, None if info.shape is None else list(info.shape))
    if info.kind == "sequence":
        return helper.make_sequence_type_proto(_type_proto(info.elem))
    if info.kind == "optional":
        return helper.make_optional_type_proto(_type_proto(info.elem))
    return onnx.TypeProto()
