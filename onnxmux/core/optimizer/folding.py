"""Constant folding: nodes whose inputs are all known at load time are run once, by the CPU kernels.

Folding works in graph order, so a whole chain or subgraph of constant-only nodes (Constant,
ConstantOfShape, Shape of a static shape, arithmetic on initializers...) collapses into the
initializers it finally produces.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxmux.core.context import NodeContext, tensor_to_numpy
from onnxmux.core.provider import KernelProvider
from onnxmux.core.optimizer.editing import (
    RANDOM_OPS,
    constant,
    graph_nodes,
    has_subgraph,
    is_constant,
    is_op,
    make_initializer,
    opset,
    static_shape,
)
from onnxmux.core.optimizer.rules import Rule
from onnxmux.core.types import type_info

if TYPE_CHECKING:
    from onnxmux.core.custom_ops import SessionCustomOps

logger = logging.getLogger("onnxmux")

#: Results with more elements than this stay computed at run time (they would bloat the model).
MAX_FOLDED_ELEMENTS = 16 * 1024 * 1024
#: Ops never folded: random ones, and Dropout (random in training mode; removed by EliminateDropout).
UNFOLDABLE = RANDOM_OPS | {"Dropout"}
#: Ops that only read their input's shape, so a static shape is enough to fold them.
SHAPE_ONLY = frozenset({"Shape", "Size"})


class ConstantFolding(Rule):
    """Evaluate nodes whose inputs are all constants with the CPU provider's kernels (and the
    session's custom ops declared pure)."""

    name = "ConstantFolding"

    def __init__(self, max_elements: int = MAX_FOLDED_ELEMENTS, custom_ops: SessionCustomOps | None = None) -> None:
        self.max_elements = max_elements
        self.custom_ops = custom_ops

    def apply(self, graph: ir.Graph) -> int:
        """Fold every foldable node, in graph order; returns how many were folded."""
        # Imported here: providers load on first use, not when onnxmux is imported.
        from onnxmux.providers.cpu import CPUExecutionProvider

        cpu = CPUExecutionProvider()
        if self.custom_ops is not None:
            self.custom_ops.install([cpu], pure_only=True)
        count = 0
        for node in graph_nodes(graph):
            inputs = self._constant_inputs(node)
            if inputs is None:
                continue
            results = self._evaluate(graph, node, inputs, cpu)
            if results is None:
                continue
            for value, array in zip(node.outputs, results):
                if value.name:
                    # The initializer takes over the output's name, for readers and saved models.
                    name, value.name = value.name, None
                    value.replace_all_uses_with(make_initializer(graph, array, name, exact=True))
            graph.remove(node, safe=True)
            count += 1
        return count

    def _constant_inputs(self, node: ir.Node) -> list[Any] | None:
        """The node's input arrays when it can be folded, else None."""
        shape_only = node.op_type in SHAPE_ONLY and _is_default_domain(node)
        if not shape_only and not all(v is None or is_constant(v) for v in node.inputs):
            return None  # the common case, decided first
        if node.op_type in UNFOLDABLE or has_subgraph(node) or not node.outputs:
            return None
        if any(v.is_graph_output() for v in node.outputs):
            # Folding would hand every run the same initializer array as an output.
            return None
        arrays: list[Any] = []
        for value in node.inputs:
            if value is None or is_constant(value):
                arrays.append(value)
                continue
            shape = static_shape(value) if shape_only and isinstance(value.type, ir.TensorType) else None
            if shape is None:
                return None
            # A zero-strided stand-in: the kernel reads only its shape.
            arrays.append(np.broadcast_to(np.zeros((), value.type.dtype.numpy()), shape))
        return [constant(a) if isinstance(a, ir.Value) else a for a in arrays]

    def _evaluate(
        self, graph: ir.Graph, node: ir.Node, inputs: list[Any], cpu: KernelProvider
    ) -> list[np.ndarray] | None:
        """The node's output arrays computed by its CPU kernel, or None when it cannot be folded."""
        results = _tensor_constant(node)
        if results is None:
            results = self._run_kernel(graph, node, inputs, cpu)
            if results is None:
                return None
        if type(results) is not tuple:
            results = (results,)
        arrays = []
        for value, result in zip(node.outputs, results):
            if not value.name:
                arrays.append(None)
                continue
            if not isinstance(result, (np.ndarray, np.generic)) or result.dtype == object:
                return None
            array = np.asarray(result)
            if array.size > self.max_elements or not _fits(value, array):
                return None
            arrays.append(array)
        if len(arrays) < sum(1 for v in node.outputs if v.name):
            return None
        return arrays

    def _run_kernel(self, graph: ir.Graph, node: ir.Node, inputs: list[Any], cpu: KernelProvider) -> Any | None:
        """What the node's CPU kernel computes, or None when it has none or fails."""
        domain = "" if node.domain == "ai.onnx" else node.domain
        ctx = NodeContext(
            node,
            opset(graph, domain),
            [type_info(v) if v is not None else None for v in node.inputs],
            [type_info(v) if v.name else None for v in node.outputs],
            constants=inputs,
        )
        kernel, _ = cpu.kernel_for(ctx)
        if kernel is None or self._too_large(node, inputs):
            return None
        try:
            run = kernel.factory(ctx, np)
            return run(*_trim_trailing_none(inputs))
        except Exception as exc:  # a kernel that fails here fails at run time too; leave it there
            logger.debug("constant folding skipped %s: %s: %s", ctx.describe(), type(exc).__name__, exc)
            return None

    def _too_large(self, node: ir.Node, inputs: list[Any]) -> bool:
        """Whether the node's outputs would certainly exceed the size limit (checked before running it)."""
        estimate = _output_size(node, inputs)
        return estimate is not None and estimate > self.max_elements


def _tensor_constant(node: ir.Node) -> tuple[np.ndarray] | None:
    """The array of a Constant node holding a dense tensor (most of them), read without running
    the kernel; None for other nodes."""
    if node.op_type != "Constant" or not _is_default_domain(node) or len(node.attributes) != 1:
        return None
    attribute = node.attributes.get("value")
    if attribute is None or attribute.is_ref() or attribute.type != ir.AttributeType.TENSOR:
        return None
    return (tensor_to_numpy(attribute.value),)


def _is_default_domain(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def _trim_trailing_none(inputs: list[Any]) -> list[Any]:
    """Kernels take trailing absent optional inputs as missing arguments, not None."""
    end = len(inputs)
    while end and inputs[end - 1] is None:
        end -= 1
    return inputs[:end]


def _fits(value: ir.Value, array: np.ndarray) -> bool:
    """Whether a computed array agrees with the output's declared element type and static shape."""
    if isinstance(value.type, ir.TensorType):
        try:
            if value.type.dtype.numpy() != array.dtype:
                return False
        except (TypeError, ValueError, NotImplementedError):
            return False
    shape = static_shape(value)
    return shape is None or shape == array.shape


def _output_size(node: ir.Node, inputs: list[Any]) -> int | None:
    """The largest output's element count, from static shapes or the generator ops' inputs."""
    sizes = [static_shape(v) for v in node.outputs if v.name]
    if sizes and all(s is not None for s in sizes):
        return max(math.prod(s) for s in sizes)  # type: ignore[arg-type]
    if not _is_default_domain(node):
        return None
    try:
        if is_op(node, "ConstantOfShape"):
            return math.prod(int(d) for d in inputs[0].reshape(-1))
        if is_op(node, "Expand"):
            return math.prod(np.broadcast_shapes(inputs[0].shape, tuple(int(d) for d in inputs[1].reshape(-1))))
        if is_op(node, "Tile"):
            return inputs[0].size * math.prod(int(r) for r in inputs[1].reshape(-1))
        if is_op(node, "Range"):
            start, limit, delta = (float(np.asarray(a).reshape(())) for a in inputs[:3])
            return max(math.ceil((limit - start) / delta), 0) if delta else None
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return None
