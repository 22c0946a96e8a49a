"""Extended (level 2) rules: fold affine ops into Conv weights, form Gemm, collapse reshapes.

Every rule here changes how a result is computed, never what it is (up to float rounding):
Conv+BatchNormalization/Add/Mul fold into new Conv weights and bias, MatMul+Add becomes a Gemm,
Transposes next to a Gemm become its transA/transB, and Reshape chains keep only their last step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from onnxmux.core.optimizer.editing import (
    FLOAT_TYPES,
    attr,
    constant,
    dtype,
    is_constant,
    is_op,
    make_initializer,
    only_consumer,
    opset,
    other_input,
    rank,
    replace_value,
    replace_with_node,
)
from onnxmux.core.optimizer.rules import PatternRule


class _ConvFold(PatternRule):
    """Conv (constant weights and bias) followed by a per-channel affine op folded into the Conv.

    ``match`` returns the Conv's weights, bias and the per-channel ``(scale, shift)`` the next
    node applies; ``rewrite`` gives the Conv ``W * scale`` and ``B * scale + shift``.
    """

    roots = frozenset({"Conv"})
    #: The op type of the successor folded in (checked before the weights are read).
    follower: ClassVar[str] = ""

    def channel_affine(self, conv: ir.Node, nxt: ir.Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The (scale, shift) per output channel that ``nxt`` applies to the Conv output, or None."""
        raise NotImplementedError

    def match(self, node: ir.Node) -> Any | None:
        """(next node, W, B or None, (scale, shift)) for a foldable Conv and successor."""
        if not is_op(node, "Conv") or len(node.inputs) < 2 or dtype(node.outputs[0]) not in FLOAT_TYPES:
            return None
        has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
        if not is_constant(node.inputs[1]) or (has_bias and not is_constant(node.inputs[2])):
            return None
        nxt = only_consumer(node.outputs[0])
        if nxt is None or nxt.graph is not node.graph or not is_op(nxt, self.follower):
            return None
        weights = constant(node.inputs[1])
        affine = self.channel_affine(node, nxt, weights.shape[0])
        if affine is None:
            return None
        return nxt, weights, constant(node.inputs[2]) if has_bias else None, affine

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """New weights and bias for the Conv; the successor's readers read the Conv."""
        nxt, weights, bias, (scale, shift) = match
        channels = weights.shape[0]
        wide = np.float64
        new_w = weights.astype(wide) * scale.reshape(channels, *(1,) * (weights.ndim - 1))
        old_b = np.zeros(channels, wide) if bias is None else bias.astype(wide)
        new_b = old_b * scale + shift
        w_value = make_initializer(graph, new_w.astype(weights.dtype), f"{node.inputs[1].name}_folded")
        b_value = make_initializer(graph, new_b.astype(weights.dtype), f"{node.name or 'conv'}_bias_folded")
        if len(node.inputs) < 3:
            node.resize_inputs(3)
        node.replace_input_with(1, w_value)
        node.replace_input_with(2, b_value)
        replace_value(graph, nxt.outputs[0], node.outputs[0])
        graph.remove(nxt, safe=True)


def _per_channel(array: np.ndarray | None, out_rank: int, channels: int, want: ir.DataType | None) -> np.ndarray | None:
    """A constant that broadcasts over a Conv output only along the channel axis, as (channels,)."""
    if array is None or array.ndim > out_rank or want is None:
        return None
    if ir.DataType.from_numpy(array.dtype) != want:
        return None
    full = (1,) * (out_rank - array.ndim) + array.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, channels):
        return None
    return np.broadcast_to(array.reshape(-1).astype(np.float64), (channels,))


def _channel_operand(conv: ir.Node, nxt: ir.Node, op_type: str, channels: int) -> np.ndarray | None:
    """When ``nxt`` is an ``op_type`` node combining the Conv output with a per-channel constant,
    that constant as (channels,) float64; else None."""
    if not is_op(nxt, op_type):
        return None
    return _per_channel(constant(other_input(nxt, conv.outputs[0])), conv_rank(conv), channels, dtype(conv.outputs[0]))


class FuseConvBatchNorm(_ConvFold):
    """Conv followed by inference-mode BatchNormalization: the normalization moves into W and B."""

    name = "FuseConvBatchNorm"
    follower = "BatchNormalization"

    def channel_affine(self, conv: ir.Node, nxt: ir.Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """scale / sqrt(var + eps) and bias - mean * that, when BN is in inference mode."""
        if not is_op(nxt, "BatchNormalization") or nxt.inputs[0] is not conv.outputs[0]:
            return None
        version = opset(nxt.graph)
        if any(v.name for v in nxt.outputs[1:]):
            return None
        if (version >= 14 and attr(nxt, "training_mode", 0)) or (version < 9 and attr(nxt, "spatial", 1) != 1):
            return None
        params = [constant(v) for v in nxt.inputs[1:5]]
        if len(params) != 4 or any(p is None or p.shape != (channels,) for p in params):
            return None
        scale, shift, mean, var = (p.astype(np.float64) for p in params)
        factor = scale / np.sqrt(var + attr(nxt, "epsilon", 1e-5))
        return factor, shift - mean * factor


class FuseConvAdd(_ConvFold):
    """Conv followed by Add of a constant that varies only per channel: added to the bias."""

    name = "FuseConvAdd"
    follower = "Add"

    def channel_affine(self, conv: ir.Node, nxt: ir.Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(1, addend) when the added constant is per-channel."""
        addend = _channel_operand(conv, nxt, "Add", channels)
        return None if addend is None else (np.ones(channels), addend)


class FuseConvMul(_ConvFold):
    """Conv followed by Mul by a per-channel constant: scales the weights and bias."""

    name = "FuseConvMul"
    follower = "Mul"

    def channel_affine(self, conv: ir.Node, nxt: ir.Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(factor, 0) when the factor is per-channel."""
        factor = _channel_operand(conv, nxt, "Mul", channels)
        return None if factor is None else (factor, np.zeros(channels))


def conv_rank(conv: ir.Node) -> int:
    """The rank of a Conv's output: that of its weights."""
    weights = constant(conv.inputs[1])
    return weights.ndim if weights is not None else -1


class FuseMatMulAddToGemm(PatternRule):
    """2-D MatMul followed by Add of a constant bias broadcastable to the product: one Gemm."""

    name = "FuseMatMulAddToGemm"
    roots = frozenset({"MatMul"})

    def match(self, node: ir.Node) -> Any | None:
        """(Add node, bias) for a 2-D float MatMul whose only reader adds a suitable constant."""
        if not is_op(node, "MatMul") or opset(node.graph) < 9:
            return None
        a, b = node.inputs
        if rank(a) != 2 or rank(b) != 2 or dtype(node.outputs[0]) not in FLOAT_TYPES:
            return None
        add = only_consumer(node.outputs[0])
        if not is_op(add, "Add"):
            return None
        bias_value = other_input(add, node.outputs[0])
        bias = constant(bias_value)
        if bias is None or bias.ndim > 2 or dtype(bias_value) != dtype(node.outputs[0]):
            return None
        out_dims = (a.shape[0], b.shape[1])
        for d, have in zip(reversed(bias.shape), reversed(out_dims)):
            if d != 1 and d != have:
                return None
        return add, bias_value

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """A Gemm of the MatMul's inputs and the bias replaces both nodes."""
        add, bias_value = match
        replace_with_node(graph, add, "Gemm", [*node.inputs, bias_value])
        graph.remove(node, safe=True)


def _is_swap(node: ir.Node | None) -> bool:
    """Whether ``node`` is a Transpose swapping the two axes of a 2-D tensor."""
    if not is_op(node, "Transpose"):
        return False
    perm = attr(node, "perm")
    return perm == [1, 0] or (perm is None and rank(node.inputs[0]) == 2)


class FuseGemmTranspose(PatternRule):
    """Transposes of a Gemm's A or B become transA/transB; a Transpose of a bias-free Gemm's
    output becomes a Gemm of the swapped operands ((AB)ᵀ = BᵀAᵀ)."""

    name = "FuseGemmTranspose"
    roots = frozenset({"Gemm"})

    def match(self, node: ir.Node) -> Any | None:
        """Which operands are transposed, or "output" for a transposed result."""
        if not is_op(node, "Gemm"):
            return None
        inputs = [i for i in (0, 1) if _is_swap(node.inputs[i].producer())]
        if inputs:
            return inputs
        reader = only_consumer(node.outputs[0])
        if _is_swap(reader) and (len(node.inputs) < 3 or node.inputs[2] is None):
            return "output"
        return None

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """Read through the transposes (flipping the flags) or swap the operands."""
        flags = {"transA": attr(node, "transA", 0), "transB": attr(node, "transB", 0)}
        if match == "output":
            a, b = node.inputs[:2]
            attributes = [
                ir.AttrInt64("transA", 1 - flags["transB"]),
                ir.AttrInt64("transB", 1 - flags["transA"]),
                ir.AttrFloat32("alpha", attr(node, "alpha", 1.0)),
            ]
            replace_with_node(graph, only_consumer(node.outputs[0]), "Gemm", [b, a], attributes)
            graph.remove(node, safe=True)
            return
        for i in match:
            flag = "transA" if i == 0 else "transB"
            transpose = node.inputs[i].producer()
            node.replace_input_with(i, transpose.inputs[0])
            node.attributes[flag] = ir.AttrInt64(flag, 1 - flags[flag])
            if not transpose.outputs[0].uses() and not transpose.outputs[0].is_graph_output():
                graph.remove(transpose, safe=True)


#: Ops that only reinterpret their input's shape (the data order is unchanged).
_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


class CollapseReshapeChain(PatternRule):
    """A Reshape of a Reshape/Flatten/Squeeze/Unsqueeze reads the first one's input directly,
    when its own target shape does not copy dims (no 0 entries) from the intermediate shape."""

    name = "CollapseReshapeChain"
    roots = frozenset({"Reshape"})

    def match(self, node: ir.Node) -> Any | None:
        """The earlier reshape-like node whose input this Reshape can read instead."""
        if not is_op(node, "Reshape") or opset(node.graph) < 5 or len(node.inputs) < 2:
            return None
        producer = node.inputs[0].producer()
        if not is_op(producer, *_RESHAPES) or producer.graph is not node.graph:
            return None
        target = constant(node.inputs[1])
        if target is None or (0 in target.reshape(-1).tolist() and not attr(node, "allowzero", 0)):
            return None
        return producer

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        """Read the earlier node's input; drop it if nothing else reads it."""
        node.replace_input_with(0, match.inputs[0])
        if not match.outputs[0].uses() and not match.outputs[0].is_graph_output():
            graph.remove(match, safe=True)
