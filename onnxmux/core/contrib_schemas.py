"""Output types of onnxruntime's ``com.microsoft`` operators for onnx's shape inference.

onnx knows no ``com.microsoft`` schema, so inference stops at such a node and every value after
it stays untyped. Before inferring a model that uses these operators, the loader registers
minimal schemas (once per process, never replacing one onnx already has) whose inference
functions give each output its element type and, where cheap, its shape.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import onnx
import onnx.defs as defs
from onnx import TensorProto, shape_inference

MS_DOMAIN = "com.microsoft"
#: A dim as onnx writes it: an int, a symbolic name, or None (unknown).
Dim = Union[int, str, None]
#: A tensor's dims, or None when even its rank is unknown.
Shape = Optional[list]


def _dims(t: onnx.TypeProto) -> Shape:
    if not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def _tensor(elem: int, shape: Shape) -> onnx.TypeProto:
    return onnx.helper.make_tensor_type_proto(elem, shape)


def _attr(ctx, name: str, default):
    proto = ctx.get_attribute(name)
    return default if proto is None else onnx.helper.get_attribute_value(proto)


def _same_as_first(ctx) -> list[onnx.TypeProto]:
    return [ctx.get_input_type(0)]


def _through(op_type: str, version: int, inputs: Callable | None = None):
    """Infer like an ONNX operator (Conv, Gemm, MatMul), optionally on rewritten input types."""

    def infer(ctx) -> list[onnx.TypeProto]:
        types = [ctx.get_input_type(i) for i in range(ctx.get_num_inputs())]
        if inputs is not None:
            types = inputs(ctx, types)
        names = [f"i{i}" if t is not None else "" for i, t in enumerate(types)]
        schema = defs.get_schema(op_type, version)
        attrs = {name: _attr(ctx, name, None) for name in schema.attributes}
        node = onnx.helper.make_node(op_type, names, ["y"], **{k: v for k, v in attrs.items() if v is not None})
        found = shape_inference.infer_node_outputs(schema, node, {n: t for n, t in zip(names, types) if n})
        return [found["y"]]

    return infer


def _matmul_inputs(ctx, types: list) -> list:
    """FusedMatMul's operands as plain MatMul sees them, after its batch and matrix transposes."""
    rewritten = []
    for t, side in zip(types, "AB"):
        shape = _dims(t)
        if shape is not None and len(shape) >= 3 and _attr(ctx, f"transBatch{side}", 0):
            shape = shape[1:-1] + [shape[0], shape[-1]]
        if shape is not None and len(shape) >= 2 and _attr(ctx, f"trans{side}", 0):
            shape = shape[:-2] + [shape[-1], shape[-2]]
        rewritten.append(_tensor(t.tensor_type.elem_type, shape))
    return rewritten


def _skip_norm(ctx) -> list[onnx.TypeProto]:
    """output and input_skip_bias_sum like the input; mean and inv_std_var float, last axis 1."""
    x = ctx.get_input_type(0)
    shape = _dims(x)
    stats = _tensor(TensorProto.FLOAT, None if shape is None else shape[:-1] + [1])
    return [x, stats, stats, x]


def _simplified_norm(ctx) -> list[onnx.TypeProto]:
    x = ctx.get_input_type(0)
    return [x, _tensor(_attr(ctx, "stash_type", TensorProto.FLOAT), None)]


def _embed_norm(ctx) -> list[onnx.TypeProto]:
    ids, word = _dims(ctx.get_input_type(0)), _dims(ctx.get_input_type(2))
    elem = ctx.get_input_type(2).tensor_type.elem_type
    hidden = word[-1] if word else None
    out = _tensor(elem, None if ids is None else ids + [hidden])
    return [out, _tensor(TensorProto.INT32, None if ids is None else ids[:1]), out]


def _with_last_dim(ctx, last: Dim) -> onnx.TypeProto:
    x = ctx.get_input_type(0)
    shape = _dims(x)
    return _tensor(x.tensor_type.elem_type, None if shape is None or len(shape) != 3 else shape[:2] + [last])


def _attention(ctx) -> list[onnx.TypeProto]:
    sizes = _attr(ctx, "qkv_hidden_sizes", None)
    weights = _dims(ctx.get_input_type(1))
    last = sizes[2] if sizes else (weights[1] // 3 if weights and isinstance(weights[1], int) else None)
    elem = ctx.get_input_type(0).tensor_type.elem_type
    return [_with_last_dim(ctx, last), _tensor(elem, None)]


def _multi_head_attention(ctx) -> list[onnx.TypeProto]:
    elem = ctx.get_input_type(0).tensor_type.elem_type
    query = _dims(ctx.get_input_type(0))
    value = _dims(ctx.get_input_type(2)) if ctx.has_input(2) else None
    output = _with_last_dim(ctx, value[2] if value is not None and len(value) == 3 else (query or [None] * 3)[-1])
    return [output, _tensor(elem, None), _tensor(elem, None), _tensor(elem, None)]


def _group_query_attention(ctx) -> list[onnx.TypeProto]:
    elem = ctx.get_input_type(0).tensor_type.elem_type
    return [_with_last_dim(ctx, None), _tensor(elem, None), _tensor(elem, None), _tensor(elem, None)]


def _matmul_nbits(ctx) -> list[onnx.TypeProto]:
    x = ctx.get_input_type(0)
    shape = _dims(x)
    return [_tensor(x.tensor_type.elem_type, None if shape is None else shape[:-1] + [_attr(ctx, "N", None)])]


#: op type -> (domain, inputs (most), outputs (most), output types from the inference context).
_RULES: dict[str, tuple[str, int, int, Callable]] = {
    "FusedConv": (MS_DOMAIN, 4, 1, _through("Conv", 11)),
    "FusedGemm": (MS_DOMAIN, 3, 1, _through("Gemm", 13)),
    "FusedMatMul": (MS_DOMAIN, 2, 1, _through("MatMul", 13, _matmul_inputs)),
    "Gelu": (MS_DOMAIN, 1, 1, _same_as_first),
    "FastGelu": (MS_DOMAIN, 2, 1, _same_as_first),
    "BiasGelu": (MS_DOMAIN, 2, 1, _same_as_first),
    "QuickGelu": (MS_DOMAIN, 1, 1, _same_as_first),
    "SkipLayerNormalization": (MS_DOMAIN, 5, 4, _skip_norm),
    "SkipSimplifiedLayerNormalization": (MS_DOMAIN, 4, 4, _skip_norm),
    "SimplifiedLayerNormalization": ("", 2, 2, _simplified_norm),
    "EmbedLayerNormalization": (MS_DOMAIN, 9, 3, _embed_norm),
    "Attention": (MS_DOMAIN, 7, 2, _attention),
    "MultiHeadAttention": (MS_DOMAIN, 11, 4, _multi_head_attention),
    "RotaryEmbedding": (MS_DOMAIN, 4, 1, _same_as_first),
    "MatMulNBits": (MS_DOMAIN, 6, 1, _matmul_nbits),
    "GroupQueryAttention": (MS_DOMAIN, 16, 4, _group_query_attention),
}

_registered = False
#: The (domain, op type) pairs whose schema came from here: they type outputs, not attributes.
_ours: set[tuple[str, str]] = set()


def register_if_used(graph: onnx.GraphProto) -> None:
    """Register the schemas when ``graph`` has a node of one of these operators."""
    if not _registered and any((n.domain or "") == _RULES.get(n.op_type, ("-",))[0] for n in graph.node):
        register()


def register() -> None:
    """Register the schemas onnx lacks (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    # onnx's reference evaluator indexes every schema by name when first imported and refuses a
    # name held in two domains (RotaryEmbedding, Attention): let it index onnx's own first.
    import onnx.reference.op_run  # noqa: F401
    for op_type, (domain, inputs, outputs, infer) in _RULES.items():
        if _known(op_type, domain):
            continue
        defs.register_schema(_schema(op_type, domain, inputs, outputs, infer))
        _ours.add((domain, op_type))


def typing_only(op_type: str, domain: str) -> bool:
    """Whether the schema onnx holds for this operator is one of these minimal ones, which declare
    no attributes, so a validator must not check a node's attributes against it."""
    return (domain, op_type) in _ours


def _known(op_type: str, domain: str) -> bool:
    try:
        defs.get_schema(op_type, domain)
    except defs.SchemaError:
        return False
    return True


def _schema(op_type: str, domain: str, inputs: int, outputs: int, infer: Callable) -> defs.OpSchema:
    """A schema whose every input and output is optional and of any tensor type."""
    Param = defs.OpSchema.FormalParameter
    optional = defs.OpSchema.FormalParameterOption.Optional
    any_tensor = [f"tensor({t})" for t in _TYPE_NAMES]
    schema = defs.OpSchema(
        op_type,
        domain,
        1,
        inputs=[Param(f"input{i}", f"I{i}", param_option=optional) for i in range(inputs)],
        outputs=[Param(f"output{i}", f"O{i}", param_option=optional) for i in range(outputs)],
        type_constraints=[(f"I{i}", any_tensor, "") for i in range(inputs)]
        + [(f"O{i}", any_tensor, "") for i in range(outputs)],
    )

    def set_types(ctx) -> None:
        try:
            types = infer(ctx)
        except Exception:  # a shape rule that cannot decide leaves the outputs untyped
            return
        for i, t in enumerate(types[: ctx.get_num_outputs()]):
            if ctx.has_output(i) and t is not None:
                ctx.set_output_type(i, t)

    schema.set_type_and_shape_inference_function(set_types)
    return schema


_TYPE_NAMES = ("float", "float16", "bfloat16", "double", "int8", "uint8", "int16", "int32", "int64", "bool")
