"""Extended (level 2) fusion of the decomposed RMS norm (T5's, LLaMA's) into RMSNormalization.

Exporters write ``x / sqrt(mean(x²) + eps) [* gamma]`` as Pow (or Mul(x, x)), ReduceMean, Add,
Sqrt and then Reciprocal + Mul, Div(1, ·) + Mul, or Div(x, ·). Where the model's opset predates
the ONNX operator (23), the fused node is the com.onnxmux kernel of the same name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxmux.core.optimizer.editing import (
    FLOAT_TYPES,
    close_to,
    constant,
    dtype,
    is_op,
    make_initializer,
    only_consumer,
    other_input,
    rank,
    replace_with_node,
)
from onnxmux.core.optimizer.transformer import _domain_for, _OnnxOrPrivate, _param, _reduced_axes, _trailing

#: The first opset with the ONNX RMSNormalization operator.
RMS_NORM_SINCE = 23


class FuseRMSNormalization(_OnnxOrPrivate):
    """``x / Sqrt(ReduceMean(x²) + eps) [* gamma]`` over trailing axes into RMSNormalization."""

    name = "FuseRMSNormalization"
    fused_op = "RMSNormalization"
    onnx_since = RMS_NORM_SINCE
    roots = frozenset({"ReduceMean"})

    def match(self, node: ir.Node) -> Any | None:
        """(x, k, eps, normalized shape, gamma, last node) when ``node`` is the ReduceMean of x²."""
        if not is_op(node, "ReduceMean"):
            return None
        x = _squared(node.inputs[0])
        axes = _reduced_axes(node)
        k = _trailing(axes, x) if x is not None and axes is not None else None
        if k is None or dtype(x) not in FLOAT_TYPES or only_consumer(node.inputs[0]) is not node:
            return None
        add_eps = only_consumer(node.outputs[0])
        eps = other_input(add_eps, node.outputs[0]) if is_op(add_eps, "Add") else None
        sqrt = only_consumer(add_eps.outputs[0]) if eps is not None else None
        if constant(eps) is None or constant(eps).size != 1 or constant(eps).ndim > (rank(x) or 0):
            return None
        if not is_op(sqrt, "Sqrt"):
            return None
        last = _normalized(x, sqrt.outputs[0])
        if last is None or x.shape is None:
            return None
        normalized = tuple(x.shape)[-k:]
        if not all(isinstance(dim, int) for dim in normalized):
            return None
        gamma = None
        step = only_consumer(last.outputs[0])
        if is_op(step, "Mul"):
            gamma = _param(other_input(step, last.outputs[0]), normalized, x)
            if gamma is not None:
                last = step
        return x, k, float(constant(eps).reshape(())), normalized, gamma, last

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """One RMSNormalization (axis -k) replaces the pattern's last node."""
        x, k, epsilon, normalized, gamma, last = match
        x_type = dtype(x)
        scale = gamma if gamma is not None else np.ones(normalized, x_type.numpy())
        inputs = [x, make_initializer(graph, scale.reshape(normalized), f"{last.name}_scale")]
        attributes = [ir.AttrInt64("axis", -k), ir.AttrFloat32("epsilon", epsilon)]
        if x_type == ir.DataType.DOUBLE:
            attributes.append(ir.AttrInt64("stash_type", ir.DataType.DOUBLE.value))
        domain = _domain_for(graph, RMS_NORM_SINCE)
        replace_with_node(graph, last, "RMSNormalization", inputs, attributes, domain=domain)


def _squared(value: ir.Value) -> ir.Value | None:
    """x when ``value`` is Pow(x, 2) or Mul(x, x) read only by the ReduceMean, else None."""
    node = value.producer()
    if is_op(node, "Pow") and close_to(node.inputs[1], 2.0):
        return node.inputs[0]
    if is_op(node, "Mul") and node.inputs[0] is node.inputs[1]:
        return node.inputs[0]
    return None


def _normalized(x: ir.Value, root: ir.Value) -> ir.Node | None:
    """The node computing ``x / root``: Div(x, root), or Mul(x, ·) of Reciprocal(root) or Div(1, root)."""
    inverse = only_consumer(root)
    if is_op(inverse, "Div") and inverse.inputs[1] is root:
        if inverse.inputs[0] is x:
            return inverse
        if not close_to(inverse.inputs[0], 1.0):
            return None
    elif not is_op(inverse, "Reciprocal"):
        return None
    mul = only_consumer(inverse.outputs[0])
    if is_op(mul, "Mul") and other_input(mul, inverse.outputs[0]) is x:
        return mul
    return None
