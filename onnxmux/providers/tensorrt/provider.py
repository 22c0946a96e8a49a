"""``TensorrtExecutionProvider``: claimed subgraphs built into TensorRT engines on a CUDA device.

EXPERIMENTAL, NOT RUN ON HARDWARE. It is written against TensorRT 10's documented Python API,
and no machine of this project has had TensorRT and a GPU together, so its GPU path (capability
query, engine build, execution) has never been executed. Its options, availability reasons,
engine cache and subgraph export are tested without TensorRT (tests/test_tensorrt.py); see
docs/tensorrt.md for what has and has not been exercised.

TensorRT and CuPy are imported only when the provider is instantiated or its availability is
checked, since provider discovery imports this module on every machine.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.provider import CompileProvider, Subgraph
from onnxmux.providers.tensorrt import availability, capability
from onnxmux.providers.tensorrt.cache import BlobCache, GpuIdentity
from onnxmux.providers.tensorrt.compiled import TensorrtSubgraph
from onnxmux.providers.tensorrt.engine import EngineBuilder, ProfileShapes
from onnxmux.providers.tensorrt.export import export_model
from onnxmux.providers.tensorrt.options import OPTION_TYPES, TensorrtSettings

logger = logging.getLogger("onnxmux")


class TensorrtExecutionProvider(CompileProvider):
    """Claims what TensorRT's ONNX parser supports and runs each group as a TensorRT engine on ``cuda:<device_id>``.

    Experimental, not run on hardware. Options (onnxruntime's names): ``device_id``,
    ``trt_fp16_enable``, ``trt_bf16_enable``, ``trt_max_workspace_size``,
    ``trt_builder_optimization_level``, ``trt_timing_cache_enable``/``trt_timing_cache_path``,
    ``trt_engine_cache_enable``/``trt_engine_cache_path``, and ``trt_profile_min_shapes``,
    ``trt_profile_opt_shapes``, ``trt_profile_max_shapes`` for dynamic shapes.
    """

    name = "TensorrtExecutionProvider"
    aliases = ("tensorrt",)
    device = "cuda:0"
    option_types = OPTION_TYPES
    #: Shown by ``onnxmux providers`` next to the status.
    note = availability.EXPERIMENTAL

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.settings = TensorrtSettings.from_options(self.options)
        import tensorrt as trt

        from onnxmux.providers.tensorrt.device import TrtDevice, TrtTransfer

        self.trt = trt
        self.gpu = TrtDevice(self.settings.device_id)
        self.device = self.gpu.name
        self.data_transfer = TrtTransfer(self.gpu)
        self.gpu_identity = GpuIdentity(trt.__version__, self.gpu.gpu_name, self.gpu.compute_capability)
        self.trt_logger = trt.Logger(trt.Logger.WARNING)
        with self.gpu.device:
            self.runtime = trt.Runtime(self.trt_logger)
        self.builder = EngineBuilder(trt, self.trt_logger, self.settings)
        self.timing_cache = BlobCache(self.settings.trt_timing_cache_path, "onnxmux_trt_timing_", ".cache")
        self.opsets: dict[str, int] = {}
        self._reasons: dict[ir.Node, str] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why it cannot run here ("tensorrt not installed", "no CUDA device"...), always marked experimental."""
        return availability.unavailable_reason()

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        """The groups TensorRT's parser supports among the candidates onnxmux's own checks let through."""
        self.opsets = capability.opsets_of(graph, self.opsets)
        with self.gpu.device:
            groups, reasons = capability.claim(graph, candidates, self.opsets, capability.parser_query(self.trt, self.trt_logger))
        self._reasons.update(reasons)
        return groups

    def explain(self, node: ir.Node) -> str:
        """Why TensorRT did not take ``node``: onnxmux's check or the parser's error."""
        return self._reasons.get(node, "not claimed by TensorRT")

    def compile(self, subgraph: Subgraph) -> Callable[..., tuple]:
        """The subgraph exported for TensorRT; engines are built now (fixed shapes, profiles) or per input shapes."""
        names = ", ".join(n.name or n.op_type for n in subgraph.nodes[:3])
        label = f"TensorRT subgraph of {len(subgraph.nodes)} nodes ({names}{'...' if len(subgraph.nodes) > 3 else ''})"
        return TensorrtSubgraph(self, export_model(subgraph), subgraph.inputs, subgraph.outputs, label)

    def build(self, onnx_bytes: bytes, shapes: ProfileShapes, label: str) -> bytes:
        """A serialized engine, reading and updating the timing cache when it is enabled."""
        timing = self.timing_cache.load(self.gpu_identity) if self.settings.trt_timing_cache_enable else None
        with self.gpu.device:
            engine, timing = self.builder.build(onnx_bytes, shapes, timing, label)
        if timing is not None:
            self.timing_cache.store(self.gpu_identity, timing)
        return engine
