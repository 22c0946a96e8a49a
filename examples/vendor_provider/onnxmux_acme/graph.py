"""A compile-based provider: claims elementwise nodes, compiles each group into one function."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
import onnx_ir as ir

import onnxmux

#: The operators this provider compiles, as numpy functions of their inputs.
ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "Tanh": np.tanh,
    "Exp": np.exp,
    "Sigmoid": lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype),
}


def _is_float_tensor(value: ir.Value | None) -> bool:
    return value is not None and isinstance(value.type, ir.TensorType) and value.dtype == ir.DataType.FLOAT


class AcmeGraphExecutionProvider(onnxmux.CompileProvider):
    """Fuses float32 elementwise nodes into one Python function per group."""

    name = "AcmeGraphExecutionProvider"
    aliases = ("acme-graph",)
    device = "cpu"

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        """One group with every elementwise float node; onnxmux splits it where fusing would loop."""
        group = [
            n
            for n in candidates
            if n.domain in ("", "ai.onnx")
            and n.op_type in ELEMENTWISE
            and all(_is_float_tensor(v) for v in list(n.inputs) + list(n.outputs))
        ]
        return [group] if group else []

    def explain(self, node: ir.Node) -> str:
        """Why a node stayed with the next provider."""
        if node.op_type not in ELEMENTWISE:
            return f"{node.op_type} is not an elementwise operator Acme compiles"
        return "Acme compiles float32 tensors only"

    def compile(self, subgraph: onnxmux.Subgraph) -> Callable[..., tuple]:
        """Turn the subgraph's nodes into a list of (function, input names, output name)."""
        graph = subgraph.model.graph
        constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        program = [(ELEMENTWISE[n.op_type], list(n.input), n.output[0]) for n in graph.node]
        inputs, outputs = subgraph.inputs, subgraph.outputs

        def run(*values: np.ndarray) -> tuple:
            env = dict(constants)
            env.update(zip(inputs, values))
            for function, names, out in program:
                env[out] = function(*[env[name] for name in names])
            return tuple(env[name] for name in outputs)

        return run
