"""``CUDAExecutionProvider``: kernels on an NVIDIA GPU through CuPy; values stay CuPy arrays on
the device between CUDA nodes.

CuPy is imported only when the provider is instantiated or its availability is checked
(``availability.py``): provider discovery imports this module on every machine.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.provider import KernelProvider
from onnxmux.core.registry import KernelDef
from onnxmux.providers.cpu.fusion import fuse
from onnxmux.providers.cuda import availability
from onnxmux.providers.cuda.options import OPTION_TYPES, CUDASettings
from onnxmux.providers.cuda.table import build_registry, select_kernel

logger = logging.getLogger("onnxmux")


class CUDAExecutionProvider(KernelProvider):
    """Runs nodes as CuPy kernels on one CUDA device (``cuda:<device_id>``).

    Options (onnxruntime's names): ``device_id``, ``gpu_mem_limit`` (bytes, a limit on CuPy's
    memory pool), ``arena_extend_strategy`` and ``cudnn_conv_algo_search`` (accepted for
    compatibility; CuPy's pool and the GEMM convolution have no such choice),
    ``enable_cuda_graph`` and ``do_copy_in_default_stream``.
    """

    name = "CUDAExecutionProvider"
    aliases = ("cuda",)
    device = "cuda:0"
    option_types = OPTION_TYPES
    registry = build_registry()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        from onnxmux.providers.cuda.device import CUDARuntime, CUDATransfer

        self.settings = CUDASettings.from_options(self.options)
        self.runtime = CUDARuntime(self.settings)
        #: The kernels' array module.
        self.xp = self.runtime.cp
        self.device = self.runtime.name
        self.data_transfer = CUDATransfer(self.runtime)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why the provider cannot run here: CuPy missing, no driver or device, or a driver too old."""
        return availability.unavailable_reason()

    def kernel_for(self, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
        """The table's kernel, made to run on this provider's device and the run's stream."""
        kernel, reason = select_kernel(self, ctx)
        if kernel is None:
            return None, reason
        return dataclasses.replace(kernel, factory=self.runtime.device_factory(kernel.factory)), None

    def rewrite_partition(self, graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
        """The CPU provider's fusions (Conv/Gemm + activation, attention), which the CuPy kernels implement."""
        return fuse(graph, nodes)

    def wrap_plan(self, plan: Any) -> Any:
        """With ``enable_cuda_graph``, a plan that captures and replays its GPU work per input shapes."""
        if not self.settings.enable_cuda_graph:
            return plan
        from onnxmux.providers.cuda.graphs import CUDAGraphPlan

        return CUDAGraphPlan(plan, self)
