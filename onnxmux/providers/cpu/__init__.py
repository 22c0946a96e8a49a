"""The NumPy CPU provider: a kernel for every operator, the fallback behind every session."""

from __future__ import annotations

import importlib
import pkgutil

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.provider import KernelProvider
from onnxmux.core.registry import KernelDef
from onnxmux.providers.cpu import ops
from onnxmux.providers.cpu.functions import function_kernel
from onnxmux.providers.cpu.fusion import fuse
from onnxmux.providers.cpu.registry import REGISTRY


def _load_ops() -> None:
    """Import every module of ``ops`` so that its kernels register themselves."""
    for info in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"{ops.__name__}.{info.name}")


_load_ops()


class CPUExecutionProvider(KernelProvider):
    """Runs every node on the host with numpy."""

    name = "CPUExecutionProvider"
    aliases = ("cpu",)
    device = "cpu"
    registry = REGISTRY

    def rewrite_partition(self, graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
        """Fuse Conv/Gemm with activations and attention patterns into com.onnxmux kernels."""
        return fuse(graph, nodes)

    def kernel_for(self, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
        """A registered kernel, else the operator's ONNX function body when its schema has one."""
        kernel, reason = super().kernel_for(ctx)
        if kernel is not None:
            return kernel, None
        body = function_kernel(ctx)
        if body is None:
            return None, reason
        why = body.supports(ctx) if body.supports is not None else None
        return (None, f"{reason}; its function body cannot be used: {why}") if why else (body, None)
