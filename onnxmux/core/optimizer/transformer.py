"""Extended (level 2) fusions of the elementwise patterns exporters emit for transformer layers.

Gelu (erf form) and FastGelu (tanh approximation) become one Gelu node, the decomposed
ReduceMean/Sub/Pow/.../Add layer norm becomes LayerNormalization, and Exp/ReduceSum/Div becomes
Softmax. Where the model's opset predates the ONNX operator (Gelu 20, LayerNormalization 17),
the fused node uses the com.onnxmux kernel of the same name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxmux.core.optimizer.editing import (
    FLOAT_TYPES,
    ONNXMUX_DOMAIN,
    attr,
    close_to,
    constant,
    dtype,
    is_op,
    make_initializer,
    only_consumer,
    opset,
    other_input,
    private_op_allowed,
    rank,
    replace_with_node,
    static_shape,
)
from onnxmux.core.optimizer.rules import PatternRule

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715


class _OnnxOrPrivate(PatternRule):
    """A fusion into the ONNX operator ``fused_op`` (from opset ``onnx_since``); in older opsets
    it makes the com.onnxmux kernel of that name, but only where every selected provider has a
    kernel for it (``private_op_allowed``), so no provider is handed a private op it cannot run."""

    fused_op = ""
    onnx_since = 0

    def apply(self, graph: ir.Graph) -> int:
        """Rewrite as PatternRule does, unless that would need a private op no provider allows."""
        if opset(graph) < self.onnx_since and not private_op_allowed(graph, self.fused_op):
            return 0
        return super().apply(graph)


def _domain_for(graph: ir.Graph, onnx_since: int) -> str:
    """``""`` when the model's opset has the ONNX operator, else the com.onnxmux domain (declared)."""
    if opset(graph) >= onnx_since:
        return ""
    graph.opset_imports.setdefault(ONNXMUX_DOMAIN, 1)
    return ONNXMUX_DOMAIN


def _consts_fit(x: ir.Value, *values: ir.Value) -> bool:
    """Whether constants broadcast into ``x`` without growing it (their rank is at most x's)."""
    widest = max(constant(v).ndim for v in values)
    return widest == 0 or (rank(x) is not None and rank(x) >= widest)


def _half_x_product(x: ir.Value, one_plus: ir.Value) -> tuple[ir.Node, list[ir.Value]] | None:
    """The node computing ``0.5 * x * one_plus`` in any association order, with its 0.5 constant."""
    first = only_consumer(one_plus)
    if not is_op(first, "Mul"):
        return None
    factor = other_input(first, one_plus)
    if factor is x or close_to(factor, 0.5):
        second = only_consumer(first.outputs[0])
        if not is_op(second, "Mul"):
            return None
        last = other_input(second, first.outputs[0])
        if factor is x and close_to(last, 0.5):
            return second, [last]
        if factor is not x and last is x:
            return second, [factor]
        return None
    half_x = factor.producer() if factor is not None else None
    if is_op(half_x, "Mul") and only_consumer(factor) is first:
        half = other_input(half_x, x)
        if half is not None and half is not x and close_to(half, 0.5):
            return first, [half]
    return None


class _GeluFusion(_OnnxOrPrivate):
    """Shared rewrite of both Gelu forms into one Gelu node."""

    fused_op = "Gelu"
    onnx_since = 20

    approximate = "none"

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """A Gelu of ``x`` replaces the pattern's last node (the rest becomes dead code)."""
        x, last = match
        attributes = [ir.AttrString("approximate", self.approximate)] if self.approximate != "none" else []
        replace_with_node(graph, last, "Gelu", [x], attributes, domain=_domain_for(graph, 20))


class FuseGelu(_GeluFusion):
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` (or ``x * 0.7071...``) into Gelu."""

    name = "FuseGelu"
    roots = frozenset({"Erf"})

    def match(self, node: ir.Node) -> Any | None:
        """(x, last node) when ``node`` is the Erf of a Gelu pattern."""
        if not is_op(node, "Erf"):
            return None
        scaled = node.inputs[0].producer()
        if is_op(scaled, "Div") and close_to(scaled.inputs[1], SQRT2):
            x, k = scaled.inputs
        elif is_op(scaled, "Mul"):
            orders = (scaled.inputs, scaled.inputs[::-1])
            x, k = next(((a, b) for a, b in orders if close_to(b, 1 / SQRT2)), (None, None))
        else:
            return None
        if x is None or dtype(x) not in FLOAT_TYPES or only_consumer(scaled.outputs[0]) is not node:
            return None
        add = only_consumer(node.outputs[0])
        one = other_input(add, node.outputs[0]) if is_op(add, "Add") else None
        if not close_to(one, 1.0):
            return None
        tail = _half_x_product(x, add.outputs[0])
        if tail is None or not _consts_fit(x, k, one, *tail[1]):
            return None
        return x, tail[0]


class FuseFastGelu(_GeluFusion):
    """``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` into Gelu(approximate="tanh")."""

    name = "FuseFastGelu"
    roots = frozenset({"Tanh"})
    approximate = "tanh"

    def match(self, node: ir.Node) -> Any | None:
        """(x, last node) when ``node`` is the Tanh of a FastGelu pattern."""
        if not is_op(node, "Tanh"):
            return None
        scaled = node.inputs[0].producer()
        if not is_op(scaled, "Mul") or only_consumer(scaled.outputs[0]) is not node:
            return None
        for inner, k in (scaled.inputs, scaled.inputs[::-1]):
            if close_to(k, SQRT_2_OVER_PI):
                found = _cubic_sum(inner)
                if found is not None:
                    break
        else:
            return None
        x, consts = found
        add = only_consumer(node.outputs[0])
        one = other_input(add, node.outputs[0]) if is_op(add, "Add") else None
        if dtype(x) not in FLOAT_TYPES or not close_to(one, 1.0):
            return None
        tail = _half_x_product(x, add.outputs[0])
        if tail is None or not _consts_fit(x, k, one, *consts, *tail[1]):
            return None
        return x, tail[0]


def _cubic_sum(value: ir.Value) -> tuple[ir.Value, list[ir.Value]] | None:
    """(x, constants) when ``value`` is ``x + 0.044715 * x^3``, x^3 as Pow or two Muls."""
    add = value.producer()
    if not is_op(add, "Add") or only_consumer(value) is None:
        return None
    for x, term in (add.inputs, add.inputs[::-1]):
        mul = term.producer()
        if not is_op(mul, "Mul"):
            continue
        for cube, c in (mul.inputs, mul.inputs[::-1]):
            if close_to(c, GELU_CUBIC) and _is_cube(cube, x):
                consts = [c]
                power = cube.producer()
                if is_op(power, "Pow"):
                    consts.append(power.inputs[1])
                return x, consts
    return None


def _is_cube(value: ir.Value, x: ir.Value) -> bool:
    """Whether ``value`` is ``x^3``: Pow(x, 3), or x * (x * x) in either order."""
    node = value.producer()
    if is_op(node, "Pow"):
        return node.inputs[0] is x and close_to(node.inputs[1], 3.0)
    if not is_op(node, "Mul"):
        return False
    square = other_input(node, x)
    inner = square.producer() if square is not None else None
    return is_op(inner, "Mul") and inner.inputs[0] is x and inner.inputs[1] is x


def _reduced_axes(node: ir.Node) -> list[int] | None:
    """The axes a Reduce* node reduces with keepdims=1, from its attribute or (newer opsets) input."""
    if attr(node, "keepdims", 1) != 1:
        return None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = attr(node, "axes")
    return None if axes is None else list(axes)


def _trailing(axes: list[int], x: ir.Value) -> int | None:
    """k when ``axes`` are exactly the last k axes of ``x``, else None."""
    if not axes:
        return None
    r = rank(x)
    if r is not None:
        if not all(-r <= a < r for a in axes):
            return None
        axes = [a - r if a >= 0 else a for a in axes]
    k = len(axes)
    return k if sorted(axes) == list(range(-k, 0)) else None


def _distinct_readers(value: ir.Value) -> list[ir.Node]:
    readers: list[ir.Node] = []
    for use in value.uses():
        if use.node not in readers:
            readers.append(use.node)
    return readers


class FuseLayerNormalization(_OnnxOrPrivate):
    """The decomposed layer norm older exporters emit, into LayerNormalization:

    ``d = x - ReduceMean(x)``; ``y = d / Sqrt(ReduceMean(d^2) + eps) [* gamma] [+ beta]``
    (``d^2`` as Pow(d, 2) or Mul(d, d); gamma and beta constants of the normalized shape).
    """

    name = "FuseLayerNormalization"
    roots = frozenset({"ReduceMean"})
    fused_op = "LayerNormalization"
    onnx_since = 17

    def match(self, node: ir.Node) -> Any | None:
        """(x, axis k, eps, gamma, beta, last node) when ``node`` is the first ReduceMean."""
        if not is_op(node, "ReduceMean"):
            return None
        x = node.inputs[0]
        axes = _reduced_axes(node)
        k = _trailing(axes, x) if axes is not None else None
        sub = only_consumer(node.outputs[0])
        if k is None or dtype(x) not in FLOAT_TYPES or not is_op(sub, "Sub") or sub.inputs != (x, node.outputs[0]):
            return None
        d = sub.outputs[0]
        if d.is_graph_output():
            return None
        readers = _distinct_readers(d)
        square = next((n for n in readers if is_op(n, "Pow", "Mul")), None)
        div = next((n for n in readers if is_op(n, "Div")), None)
        if len(readers) != 2 or square is None or div is None or div.inputs[0] is not d:
            return None
        if is_op(square, "Pow") and not (square.inputs[0] is d and close_to(square.inputs[1], 2.0)):
            return None
        if is_op(square, "Mul") and square.inputs != (d, d):
            return None
        mean2 = only_consumer(square.outputs[0])
        if not is_op(mean2, "ReduceMean") or _reduced_axes(mean2) != axes:
            return None
        add_eps = only_consumer(mean2.outputs[0])
        eps = other_input(add_eps, mean2.outputs[0]) if is_op(add_eps, "Add") else None
        sqrt = only_consumer(add_eps.outputs[0]) if eps is not None else None
        if constant(eps) is None or constant(eps).size != 1 or not is_op(sqrt, "Sqrt"):
            return None
        if only_consumer(sqrt.outputs[0]) is not div or div.inputs[1] is not sqrt.outputs[0]:
            return None
        normalized = static_shape(x)
        if normalized is None and x.shape is not None:
            tail = tuple(x.shape)[-k:]
            normalized = tail if all(isinstance(dim, int) for dim in tail) else None
        if normalized is None:
            return None
        normalized = tuple(normalized)[-k:]
        last, gamma, beta = div, None, None
        step = only_consumer(last.outputs[0])
        if is_op(step, "Mul"):
            gamma = _param(other_input(step, last.outputs[0]), normalized, x)
            if gamma is not None:
                last, step = step, only_consumer(step.outputs[0])
        if is_op(step, "Add"):
            beta = _param(other_input(step, last.outputs[0]), normalized, x)
            if beta is not None:
                last = step
        epsilon = float(constant(eps).reshape(()))
        return x, k, epsilon, normalized, gamma, beta, last

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """One LayerNormalization (axis -k) replaces the pattern's last node."""
        x, k, epsilon, normalized, gamma, beta, last = match
        x_type = dtype(x)
        np_type = x_type.numpy()
        scale = gamma if gamma is not None else np.ones(normalized, np_type)
        inputs = [x, make_initializer(graph, scale.reshape(normalized), f"{last.name}_scale")]
        if beta is not None:
            inputs.append(make_initializer(graph, beta.reshape(normalized), f"{last.name}_bias"))
        attributes = [ir.AttrInt64("axis", -k), ir.AttrFloat32("epsilon", epsilon)]
        if x_type == ir.DataType.DOUBLE:
            attributes.append(ir.AttrInt64("stash_type", ir.DataType.DOUBLE.value))
        replace_with_node(graph, last, "LayerNormalization", inputs, attributes, domain=_domain_for(graph, 17))


def _param(value: ir.Value | None, normalized: tuple[int, ...], x: ir.Value) -> np.ndarray | None:
    """A gamma/beta constant of x's type whose shape is the normalized shape (leading 1s allowed)."""
    array = constant(value)
    if array is None or dtype(value) != dtype(x) or array.ndim > (rank(x) or 0):
        return None
    shape = array.shape
    while len(shape) > len(normalized) and shape[0] == 1:
        shape = shape[1:]
    return array if shape == normalized else None


class FuseSoftmax(PatternRule):
    """``Exp(x) / ReduceSum(Exp(x))`` over one axis, optionally of ``x - ReduceMax(x)``, into Softmax."""

    name = "FuseSoftmax"
    roots = frozenset({"Exp"})

    def match(self, node: ir.Node) -> Any | None:
        """(input, axis, Div node) when ``node`` is the Exp of a softmax."""
        if not is_op(node, "Exp") or dtype(node.inputs[0]) not in FLOAT_TYPES:
            return None
        e = node.outputs[0]
        readers = _distinct_readers(e)
        total = next((n for n in readers if is_op(n, "ReduceSum")), None)
        div = next((n for n in readers if is_op(n, "Div")), None)
        if e.is_graph_output() or len(readers) != 2 or total is None or div is None:
            return None
        if total.inputs[0] is not e or div.inputs != (e, total.outputs[0]):
            return None
        if only_consumer(total.outputs[0]) is not div:
            return None
        axes = _reduced_axes(total)
        if axes is None or len(axes) != 1:
            return None
        x = _unshifted(node.inputs[0], axes)
        axis = axes[0]
        r = rank(x)
        if opset(node.graph) < 13:
            # Softmax-1/11 normalizes over all axes from ``axis`` on: equal only for the last axis.
            if not (axis == -1 or (r is not None and axis == r - 1)):
                return None
            axis = -1
        return x, axis, div

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """A Softmax replaces the Div (the rest becomes dead code)."""
        x, axis, div = match
        replace_with_node(graph, div, "Softmax", [x], [ir.AttrInt64("axis", axis)])


def _unshifted(value: ir.Value, axes: list[int]) -> ir.Value:
    """``x`` when ``value`` is ``x - ReduceMax(x)`` over the same axes (softmax is shift-invariant)."""
    sub = value.producer()
    if not is_op(sub, "Sub"):
        return value
    peak = sub.inputs[1].producer()
    if is_op(peak, "ReduceMax") and peak.inputs[0] is sub.inputs[0] and _reduced_axes(peak) == axes:
        return sub.inputs[0]
    return value
