"""OpenVINOExecutionProvider: runs the parts of a graph OpenVINO supports through OpenVINO.

OpenVINO is imported only when the provider is checked for availability or used, so that
importing onnxmux and discovering providers never loads it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.provider import HOST, CompileProvider, Subgraph
from onnxmux.providers.openvino.capability import CapabilityChecker
from onnxmux.providers.openvino.compiled import CompiledSubgraph
from onnxmux.providers.openvino.deviations import DEVIATIONS
from onnxmux.providers.openvino.options import OPTION_TYPES, Settings, check_device, physical_devices
from onnxmux.providers.openvino.serialize import model_bytes


class OpenVINOExecutionProvider(CompileProvider):
    """Claims the nodes OpenVINO can run on ``device_type`` and compiles each group with OpenVINO.

    Options (strings or native values), as onnxruntime's OpenVINO execution provider takes them:
    ``device_type`` (CPU, GPU, GPU.1, NPU, AUTO...; default CPU), ``precision`` (FP32, FP16,
    BF16, ACCURACY; default FP32), ``num_of_threads``, ``num_streams``, ``cache_dir`` (OpenVINO's
    compiled-model cache) and ``disable_dynamic_shapes`` (compile per input-shape combination).
    """

    name = "OpenVINOExecutionProvider"
    aliases = ("openvino",)
    device = HOST
    option_types = OPTION_TYPES

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        import openvino

        self.settings = Settings.from_options(self.options)
        self.core = openvino.Core()
        check_device(self.settings.device_type, self.core.available_devices)
        if self.settings.cache_dir is not None:
            self.core.set_property({"CACHE_DIR": self.settings.cache_dir})
        self.checker = CapabilityChecker(self.core, self.settings.device_type, DEVIATIONS)
        self.config = self._compile_config()
        self._reasons: dict[ir.Node, str] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the openvino package imports, else why it does not."""
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            return f"the openvino package is not installed (pip install onnxmux[openvino]): {exc}"
        return None

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        """One group of every candidate OpenVINO runs; onnxmux splits it where fusing would loop."""
        verdicts = self.checker.check(graph, candidates)
        self._reasons = {node: reason for node, reason in verdicts.items() if reason}
        group = [node for node in candidates if verdicts.get(node) is None]
        return [group] if group else []

    def explain(self, node: ir.Node) -> str:
        """Why OpenVINO did not take ``node`` (from the last ``claim``)."""
        return self._reasons.get(node, "not claimed by OpenVINO")

    def compile(self, subgraph: Subgraph) -> Callable[..., tuple]:
        """Read the subgraph into OpenVINO and compile it for ``device_type``; raises when OpenVINO cannot."""
        ov_model = self.core.read_model(model_bytes(subgraph.model))
        return CompiledSubgraph(
            self.core,
            ov_model,
            self.settings.device_type,
            self.config,
            subgraph.inputs,
            list(subgraph.model.graph.output),
            self.settings.disable_dynamic_shapes,
        )

    def export_compiled(self, compiled: Callable[..., tuple]) -> bytes | None:
        """OpenVINO's export of the compiled model (None when compiled per input shape)."""
        return compiled.export() if isinstance(compiled, CompiledSubgraph) else None

    def import_compiled(self, blob: bytes, subgraph: Subgraph) -> Callable[..., tuple]:
        """The compiled model imported back from ``export_compiled``'s bytes, not compiled again."""
        outputs = list(subgraph.model.graph.output)
        return CompiledSubgraph.imported(self.core, blob, self.settings.device_type, self.config, subgraph.inputs, outputs)

    def _compile_config(self) -> dict[str, Any]:
        """The properties passed to ``compile_model``: per device, or nested for AUTO/HETERO/MULTI."""
        device = self.settings.device_type
        wanted = self.settings.device_properties()
        targets = physical_devices(device) or list(self.core.available_devices)
        per_device = {}
        for target in targets:
            supported = self.core.get_property(target, "SUPPORTED_PROPERTIES")
            per_device[target] = {k: v for k, v in wanted.items() if k in supported}
        if targets == [device]:
            return per_device[device]
        return {"DEVICE_PROPERTIES": per_device}
