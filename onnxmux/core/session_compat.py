"""The parts of onnxruntime's ``InferenceSession`` API built on the core session: IOBinding, the
run variants, provider changes and fallback, graph-assignment and memory information.

``InferenceSession`` inherits them from ``SessionCompat``, so session.py keeps only the core.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import onnx

from onnxmux.core.devices import CPU
from onnxmux.core.discovery import get_available_providers
from onnxmux.core.errors import EPFail, Fail, InvalidArgument
from onnxmux.core.iobinding import IOBinding, run_placed
from onnxmux.core.memory import OrtDevice, OrtMemoryInfo
from onnxmux.core.model_options import adjust_model, options_from_model
from onnxmux.core.optimizer import save_optimized
from onnxmux.core.ortvalue import OrtValue, OrtValueVector
from onnxmux.core.provider import HOST
from onnxmux.core.selection import select_providers

logger = logging.getLogger("onnxmux")


class SessionCompat:
    """onnxruntime's session methods beyond ``run``; mixed into ``InferenceSession``."""

    def io_binding(self) -> IOBinding:
        """A new IOBinding for this session."""
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options: Any = None) -> None:
        """Run on the binding's inputs; its outputs are then read with ``iobinding.get_outputs()``."""
        iobinding._run(run_options)

    def run_with_ort_values(
        self, output_names: Sequence[str] | None, input_dict_ort_values: dict[str, OrtValue], run_options: Any = None
    ) -> list[OrtValue]:
        """Run on OrtValues (on any device); returns the outputs as host OrtValues."""
        names = list(output_names) if output_names else [o.name for o in self.get_outputs()]
        return run_placed(self, input_dict_ort_values, {name: CPU for name in names}, run_options)

    def run_with_ortvaluevector(
        self,
        run_options: Any,
        feed_names: Sequence[str],
        feeds: OrtValueVector,
        fetch_names: Sequence[str],
        fetches: OrtValueVector,
        fetch_devices: Sequence[OrtDevice],
    ) -> None:
        """Run on an OrtValueVector of inputs; appends the outputs, each on its fetch device, to ``fetches``."""
        if len(fetch_devices) != len(fetch_names):
            raise InvalidArgument("run_with_ortvaluevector: one fetch device is needed per fetch name")
        outputs = {name: device._device for name, device in zip(fetch_names, fetch_devices)}
        for value in run_placed(self, dict(zip(feed_names, feeds)), outputs, run_options):
            fetches.push_back(value)

    def run_async(
        self,
        output_names: Sequence[str] | None,
        input_feed: dict[str, Any],
        callback: Callable[[list, Any, str], None],
        user_data: Any,
        run_options: Any = None,
    ) -> None:
        """Run on a worker thread; ``callback(results, user_data, error)`` gets the outputs and an
        empty string, or an empty list and the error's text, as onnxruntime's does."""

        def work() -> None:
            try:
                results, error = self.run(output_names, input_feed, run_options), ""
            except Exception as exc:
                results, error = [], str(exc)
            callback(results, user_data, error)

        threading.Thread(target=work, name="onnxmux-run-async", daemon=True).start()

    # -- providers and fallback ---------------------------------------------------------
    #: Whether a run that fails with EPFail is retried once on the CPU provider (onnxruntime's default).
    _enable_fallback = True

    def set_providers(self, providers: Sequence[Any] | None = None, provider_options: Sequence[dict] | None = None) -> None:
        """Re-create the session on other providers (re-partitioning the model); an unknown
        provider raises and leaves the session as it was."""
        if providers is None:
            providers = get_available_providers()
        select_providers(providers, provider_options)  # validate before anything changes
        source, disabled = self._source
        type(self).__init__(self, source, self._options, providers, provider_options, disabled)

    def enable_fallback(self) -> None:
        """Retry a run that failed with EPFail once on the CPU provider (the default)."""
        self._enable_fallback = True

    def disable_fallback(self) -> None:
        """Let EPFail propagate from ``run``."""
        self._enable_fallback = False

    def _fall_back(self, error: EPFail) -> Any:
        """The plan to retry on after ``error``, having moved the session to the CPU; re-raises
        when fallback is disabled. Falls back once, as onnxruntime does."""
        if not self._enable_fallback:
            raise error
        logger.warning("EP Error: %s using %s; falling back to CPUExecutionProvider and retrying", error, self.get_providers())
        self.set_providers(["CPUExecutionProvider"])
        self._enable_fallback = False
        return self._plan

    # -- where things run and live --------------------------------------------------------
    def get_provider_graph_assignment_info(self) -> list[OrtEpAssignedSubgraph]:
        """The nodes of each partition and the provider running it; needs the session config entry
        ``session.record_ep_graph_assignment_info`` set to ``"1"``, as in onnxruntime."""
        if self._options.config(RECORD_ASSIGNMENT) != "1":
            raise Fail(
                f"Session configuration entry '{RECORD_ASSIGNMENT}' must be set to \"1\" to retrieve "
                "EP graph assignment information."
            )
        plan = self.get_execution_plan()
        kinds = {n["name"]: n for n in plan.nodes}
        return [
            OrtEpAssignedSubgraph(
                p["provider"], [OrtEpAssignedNode(name, kinds[name]["op_type"], kinds[name]["domain"]) for name in p["nodes"]]
            )
            for p in plan.partitions
        ]

    def get_input_memory_infos(self) -> list[OrtMemoryInfo]:
        """Per input a caller feeds, the memory of the device its first reader runs on."""
        plan = self._plan
        infos = []
        for spec, slot in zip(self._inputs, plan.input_slots):
            if spec.has_default:
                continue
            first = next((step for step in plan.steps if slot in step[1]), None)
            copied = first is not None and first[2] and first[2][0] in plan.copied_from
            infos.append(OrtMemoryInfo.of_device(plan.locations.get(first[2][0], HOST) if copied else HOST))
        return infos

    def get_output_memory_infos(self) -> list[OrtMemoryInfo]:
        """Per output, the memory of the device that makes it."""
        plan = self._plan
        return [
            OrtMemoryInfo.of_device(plan.locations.get(plan.copied_from.get(slot, slot), HOST))
            for slot in plan.output_slots
        ]

    # -- load and save ------------------------------------------------------------------------
    def _adjust_model(self, proto: onnx.ModelProto, base_dir: Path) -> None:
        """The loader's hook: options embedded in the model, then the options that change it."""
        self._options = options_from_model(proto, self._options)
        adjust_model(proto, base_dir, self._options)

    def _save_optimized(self) -> None:
        """Write the optimized model to ``optimized_model_filepath``, with onnxruntime's external-data entries."""
        options = self._options
        min_size = options.config(EXTERNAL_MIN_SIZE, "1024")
        try:
            threshold = int(min_size)
        except ValueError as exc:
            raise InvalidArgument(f"session config entry '{EXTERNAL_MIN_SIZE}' must be an integer, got {min_size!r}") from exc
        save_optimized(self._model.model, options.optimized_model_filepath, options.config(EXTERNAL_FILE), threshold)


#: onnxruntime's session config keys handled here.
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"
EXTERNAL_FILE = "session.optimized_model_external_initializers_file_name"
EXTERNAL_MIN_SIZE = "session.optimized_model_external_initializers_min_size_in_bytes"


@dataclass(frozen=True)
class OrtEpAssignedNode:
    """A node as ``get_provider_graph_assignment_info`` lists it."""

    name: str
    op_type: str
    domain: str


@dataclass(frozen=True)
class OrtEpAssignedSubgraph:
    """A partition and the provider running it."""

    ep_name: str
    nodes: list[OrtEpAssignedNode]

    def get_nodes(self) -> list[OrtEpAssignedNode]:
        """The partition's nodes."""
        return list(self.nodes)
