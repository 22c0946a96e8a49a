"""The CPU provider's level-99 (ORT_ENABLE_ALL) fusions, run on the nodes assigned to it.

Conv [+ Add of a same-shaped tensor] [+ activation, SiLU's Mul(x, Sigmoid(x)) included] becomes a com.onnxmux FusedConv,
Gemm or MatMul [+ Add of a constant bias] [+ activation, Gelu included] a com.onnxmux FusedGemm, and the
attention core MatMul(Q, Kᵀ) [/ or * scale] [+ mask] -> Softmax -> MatMul(·, V) a com.onnxmux
FusedAttention. The fused kernels apply the additions, activations and softmax in place on the
product they just computed, saving full-size temporaries and dispatches. A pattern is fused
only when every node in it runs on the CPU and each intermediate value has that one reader and
is not a graph output.
"""

from __future__ import annotations

import math
from typing import Callable

import onnx_ir as ir

from onnxmux.core.node_attributes import attribute_values
from onnxmux.core.optimizer.editing import (
    FLOAT_TYPES,
    ONNXMUX_DOMAIN,
    attr,
    constant,
    dtype,
    is_op,
    only_consumer,
    opset,
    other_input,
    rank,
    replace_with_node,
    reserve_names,
    same_shape,
)


def _clip_params(node: ir.Node) -> list[float] | None:
    """[min, max] of a Clip, from its attributes (before opset 11) or constant inputs."""
    if opset(node.graph) < 11:
        return [float(attr(node, "min", -math.inf)), float(attr(node, "max", math.inf))]
    bounds = []
    for i, default in ((1, -math.inf), (2, math.inf)):
        if i >= len(node.inputs) or node.inputs[i] is None:
            bounds.append(default)
            continue
        value = constant(node.inputs[i])
        if value is None or value.size != 1:
            return None
        bounds.append(float(value.reshape(())))
    return bounds


#: ONNX activation op -> its activation_params (None when they are not known at load time).
ACTIVATION_PARAMS: dict[str, Callable[[ir.Node], "list[float] | None"]] = {
    "Relu": lambda n: [],
    "Sigmoid": lambda n: [],
    "Tanh": lambda n: [],
    "LeakyRelu": lambda n: [float(attr(n, "alpha", 0.01))],
    "HardSigmoid": lambda n: [float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5))],
    "HardSwish": lambda n: [],
    "Swish": lambda n: [float(attr(n, "alpha", 1.0))],
    "Clip": _clip_params,
}


def fuse(graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
    """Fuse Conv and Gemm/MatMul patterns among ``nodes`` (those assigned to the CPU) in ``graph``.

    Returns the CPU provider's nodes after rewriting, in graph order: the fused nodes replace
    the ones they absorbed.
    """
    mine = {node for node in nodes if node.graph is graph}
    starts = [node for node in graph if node.op_type in _STARTS and node in mine]
    if starts:
        reserve_names(graph)
    for node in starts:
        if node not in mine:  # absorbed by an earlier fusion
            continue
        if is_op(node, "Conv"):
            fused = _fuse_conv(graph, node, mine)
        elif is_op(node, "Softmax"):
            fused = _fuse_attention(graph, node, mine)
        elif is_op(node, "Gemm", "MatMul"):
            fused = _fuse_gemm(graph, node, mine)
        else:
            continue
        if fused is not None:
            mine.add(fused)
    elsewhere = [n for n in nodes if n.graph is not None and n.graph is not graph]
    return [node for node in graph if node in mine] + elsewhere


#: The op types a fusion starts at.
_STARTS = frozenset({"Conv", "Softmax", "Gemm", "MatMul"})


def _next(value: ir.Value, mine: set[ir.Node]) -> ir.Node | None:
    """The only reader of ``value`` when it runs on the CPU too."""
    reader = only_consumer(value)
    return reader if reader in mine and reader.graph is value.graph else None


def _activation(node: ir.Node | None) -> tuple[str, list[float]] | None:
    """(name, params) when ``node`` is an activation the fused kernels apply."""
    if _is_gelu(node):
        return ("FastGelu" if attr(node, "approximate", "none") == "tanh" else "Gelu"), []
    if node is None or not is_op(node, *ACTIVATION_PARAMS):
        return None
    params = ACTIVATION_PARAMS[node.op_type](node)
    return None if params is None else (node.op_type, params)


def _replace(
    graph: ir.Graph,
    op_type: str,
    inputs: list[ir.Value | None],
    attributes: list[ir.Attr],
    pattern: list[ir.Node],
    mine: set[ir.Node],
) -> ir.Node:
    """Put one com.onnxmux node where ``pattern`` (in graph order) was; returns it."""
    graph.opset_imports.setdefault(ONNXMUX_DOMAIN, 1)
    fused = replace_with_node(graph, pattern[-1], op_type, inputs, attributes, domain=ONNXMUX_DOMAIN)
    graph.remove(pattern[-2::-1], safe=True)
    mine.difference_update(pattern)
    return fused


def _with_activation(graph: ir.Graph, tail: ir.Node, mine: set[ir.Node]) -> tuple[list[ir.Node], list[ir.Attr]]:
    """The activation node(s) following ``tail`` (if any) and the attributes naming it."""
    found = _next(tail.outputs[0], mine)
    act = _activation(found)
    nodes = [found]
    if act is None:
        nodes = _silu(tail.outputs[0], mine)
        if nodes is None:
            return [], []
        act = ("Swish", [1.0])
    name, params = act
    return nodes, [ir.AttrString("activation", name), ir.AttrFloat32s("activation_params", params)]


def _is_gelu(node: ir.Node | None) -> bool:
    """Whether ``node`` is a one-input Gelu, ONNX's (opset 20) or onnxmux's (the optimizer's, for older opsets)."""
    gelu = is_op(node, "Gelu") or is_op(node, "Gelu", domain=ONNXMUX_DOMAIN)
    return gelu and len(node.inputs) == 1 and attr(node, "approximate", "none") in ("none", "tanh")


def _silu(value: ir.Value, mine: set[ir.Node]) -> list[ir.Node] | None:
    """[Sigmoid, Mul] when ``value`` is read only by Mul(value, Sigmoid(value)) (SiLU as exporters write it)."""
    if value.is_graph_output() or len(value.uses()) != 2:
        return None
    readers = {use.node for use in value.uses()}
    sigmoid = next((n for n in readers if is_op(n, "Sigmoid")), None)
    if sigmoid is None or sigmoid not in mine:
        return None
    mul = _next(sigmoid.outputs[0], mine)
    if not is_op(mul, "Mul") or mul not in readers or set(mul.inputs) != {value, sigmoid.outputs[0]}:
        return None
    return [sigmoid, mul]


def _fuse_conv(graph: ir.Graph, conv: ir.Node, mine: set[ir.Node]) -> ir.Node | None:
    """Conv [+ Add(Z)] [+ activation] -> FusedConv(X, W, B, Z)."""
    if dtype(conv.outputs[0]) not in FLOAT_TYPES:
        return None
    pattern = [conv]
    z = None
    add = _next(conv.outputs[0], mine)
    if is_op(add, "Add") and same_shape(add.outputs[0], conv.outputs[0]):
        z = other_input(add, conv.outputs[0])
        if z is not None and z is not conv.outputs[0] and dtype(z) == dtype(conv.outputs[0]):
            pattern.append(add)
        else:
            z = None
    more, attributes = _with_activation(graph, pattern[-1], mine)
    if z is None and not more:
        return None
    pattern += more
    inputs = list(conv.inputs)
    if z is not None:
        inputs = (inputs + [None])[:3] + [z]
    return _replace(graph, "FusedConv", inputs, [*attribute_values(conv), *attributes], pattern, mine)


def _fuse_gemm(graph: ir.Graph, node: ir.Node, mine: set[ir.Node]) -> ir.Node | None:
    """Gemm [+ activation], or MatMul [+ Add(constant bias)] [+ activation] -> FusedGemm."""
    out = node.outputs[0]
    if dtype(out) not in FLOAT_TYPES:
        return None
    pattern = [node]
    inputs = list(node.inputs)
    if is_op(node, "MatMul"):
        if (rank(node.inputs[0]) or 0) < 2 or (rank(node.inputs[1]) or 0) < 2:
            return None
        add = _next(out, mine)
        bias = other_input(add, out) if is_op(add, "Add") else None
        if bias is not None and _is_row_bias(bias, out):
            pattern.append(add)
            inputs.append(bias)
    more, attributes = _with_activation(graph, pattern[-1], mine)
    if len(pattern) == 1 and not more:
        return None
    pattern += more
    return _replace(graph, "FusedGemm", inputs, [*attribute_values(node), *attributes], pattern, mine)


def _is_row_bias(bias: ir.Value, product: ir.Value) -> bool:
    """Whether a constant broadcasts into the MatMul product without growing it."""
    array = constant(bias)
    if array is None or dtype(bias) != dtype(product) or product.shape is None or array.ndim > len(product.shape):
        return False
    dims = list(product.shape)[len(product.shape) - array.ndim :]
    return all(d == 1 or (isinstance(have, int) and d == have) for d, have in zip(array.shape, dims))


def _fuse_attention(graph: ir.Graph, softmax: ir.Node, mine: set[ir.Node]) -> ir.Node | None:
    """MatMul(Q, Kᵀ) [/ c or * c] [+ mask] -> Softmax(last axis) -> MatMul(·, V) -> FusedAttention.

    The mask may broadcast the scores to a larger shape (the kernel then adds it out of place),
    so symbolic dimensions the shape inference named differently do not prevent the fusion.
    """
    scores = softmax.inputs[0]
    r = rank(scores)
    axis = attr(softmax, "axis", -1 if opset(graph) >= 13 else 1)
    if r is None or r < 2 or axis not in (-1, r - 1) or dtype(scores) not in FLOAT_TYPES:
        return None
    context = _next(softmax.outputs[0], mine)
    if not is_op(context, "MatMul") or context.inputs[0] is not softmax.outputs[0]:
        return None
    pattern = [softmax, context]
    value, mask, scale = scores, None, 1.0
    step = _producer(value, mine)
    if is_op(step, "Add"):
        for chain, addend in (step.inputs, step.inputs[::-1]):
            if is_op(_producer(chain, mine), "Div", "Mul", "MatMul"):
                if dtype(addend) == dtype(value):
                    mask = None if _zero_scalar(addend, r) else addend  # legacy exports add a constant 0
                    value = chain
                    pattern.insert(0, step)
                    step = _producer(value, mine)
                break
    if is_op(step, "Div", "Mul"):
        orders = (step.inputs,) if step.op_type == "Div" else (step.inputs, step.inputs[::-1])
        for chain, factor_value in orders:
            factor = constant(factor_value)
            scalar = factor is not None and factor.size == 1 and factor.ndim <= r  # ndim: no broadcast growth
            if scalar and factor.dtype == dtype(value).numpy() and factor.any():
                number = float(factor.reshape(()))
                scale = 1 / number if step.op_type == "Div" else number
                value = chain
                pattern.insert(0, step)
                step = _producer(value, mine)
                break
    if not is_op(step, "MatMul"):
        return None
    if min(rank(v) or 0 for v in step.inputs) < 2:
        return None
    pattern.insert(0, step)
    q, kt = step.inputs
    attributes = [ir.AttrFloat32("scale", scale)] if scale != 1.0 else []
    inputs = [q, kt, context.inputs[1]] + ([mask] if mask is not None else [])
    return _replace(graph, "FusedAttention", inputs, attributes, pattern, mine)


def _zero_scalar(value: ir.Value, rank: int) -> bool:
    """Whether ``value`` is a constant single 0 that broadcasts within scores of ``rank`` axes:
    adding it leaves the scores as they are, so the fused kernel skips that pass."""
    array = constant(value)
    return array is not None and array.size == 1 and array.ndim <= rank and not array.any()


def _producer(value: ir.Value, mine: set[ir.Node]) -> ir.Node | None:
    """The CPU node producing ``value`` when ``value`` is read by nothing else."""
    producer = value.producer()
    if producer is None or producer not in mine or only_consumer(value) is None:
        return None
    return producer
