"""InferenceSession: onnxruntime's Python API over onnxmux's loader, partitioner and executor."""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from onnxmux.core import run_control
from onnxmux.core.compiler import GraphCompiler
from onnxmux.core.custom_ops import SessionCustomOps
from onnxmux.core.errors import EPFail, InvalidArgument
from onnxmux.core.executor import ParallelPlan
from onnxmux.core.feeds import InputSpec, detach, missing_input, unknown_name
from onnxmux.core.gc_pause import collector_paused
from onnxmux.core.external_data import EXTERNAL_DATA_DIR_KEY
from onnxmux.core.limits import max_tensor_bytes
from onnxmux.core.loader import ModelSource, load
from onnxmux.core.node_arg import ModelMetadata, NodeArg
from onnxmux.core.optimizer import optimize
from onnxmux.core.options import ExecutionMode, GraphOptimizationLevel, RunOptions, SessionOptions
from onnxmux.core.profiling import Profiler
from onnxmux.core.selection import configure_providers, private_ops_of, select_providers
from onnxmux.core.session_compat import SessionCompat
from onnxmux.core.threads import IntraOpThreads
from onnxmux.core.types import TypeInfo
from onnxmux.partition.epcontext import ENABLE_KEY, save_context_model
from onnxmux.partition.plan import ExecutionPlan

logger = logging.getLogger("onnxmux")


class InferenceSession(SessionCompat):
    """Loads a model once, then runs it on input feeds; safe to ``run`` from several threads."""

    @collector_paused
    def __init__(
        self,
        path_or_bytes: ModelSource,
        sess_options: SessionOptions | None = None,
        providers: Sequence[Any] | None = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
        disabled_optimizers: Sequence[str] | None = None,
    ) -> None:
        self._options = sess_options or SessionOptions()
        self._source = (path_or_bytes, disabled_optimizers)  # set_providers rebuilds from it
        self._profiler = Profiler(self._options.profile_file_prefix) if self._options.enable_profiling else None
        self._max_bytes = max_tensor_bytes(self._options)
        custom_ops = SessionCustomOps.collect(self._options.custom_ops)
        self._model = load(
            path_or_bytes,
            self._options.config(EXTERNAL_DATA_DIR_KEY) or None,
            self._max_bytes,
            custom_ops,
            adjust=self._adjust_model,
        )
        if self._profiler is not None:
            self._profiler.model_loaded(path_or_bytes)
        self._timeout_ms = run_control.timeout_ms(self._options)
        self._intra_op = IntraOpThreads(self._options.intra_op_num_threads)
        fallback = self._options.config("session.disable_cpu_ep_fallback", "0") != "1"
        self._providers = select_providers(providers, provider_options, cpu_fallback=fallback)
        if custom_ops is not None:
            custom_ops.install(self._providers)
        model_dir = self._model.base_dir if isinstance(path_or_bytes, (str, os.PathLike)) else None
        configure_providers(self._providers, self._options, model_dir)
        graph = self._model.model.graph
        level = self._options.graph_optimization_level
        optimize(
            self._model.model,
            level,
            disabled=[*self._options.config("optimization.disable_rules").split(","), *(disabled_optimizers or ())],
            extra_rules=self._options.optimizer_rules,
            custom_ops=custom_ops,
            private_ops=private_ops_of(self._providers),
        )
        compiler = GraphCompiler(
            self._model.opsets,
            self._providers,
            self._model.declared_types,
            rewrite=level >= GraphOptimizationLevel.ORT_ENABLE_ALL,
            config=self._options.config_entries(),
        )
        self._plan = compiler.compile_model(graph)
        if self._options.config(ENABLE_KEY) == "1":
            save_context_model(self._model.model, compiler.units, self._options.config_entries(), path_or_bytes)
        self._compiled = compiler  # describes the execution plan when asked
        if self._options.optimized_model_filepath:
            self._save_optimized()
        if self._options.execution_mode == ExecutionMode.ORT_PARALLEL:
            threads = self._options.inter_op_num_threads or os.cpu_count() or 1
            self._plan = ParallelPlan(self._plan, threads)
        for provider in self._providers:
            self._plan = provider.wrap_plan(self._plan)
        initializers = set(graph.initializers.values())
        self._inputs = [InputSpec(v.name, compiler.type_of(v), v in initializers) for v in graph.inputs]
        self._input_index = {spec.name: i for i, spec in enumerate(self._inputs)}
        self._outputs = [(v.name, compiler.type_of(v)) for v in graph.outputs]
        self._output_index = {name: i for i, (name, _) in enumerate(self._outputs)}
        self._placed_plans: dict = {}  # plan variants for device-bound inputs and outputs (iobinding.py)
        if self._profiler is not None:
            self._plan = self._profiler.instrument(self._plan)

    # -- metadata -----------------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        """The graph inputs a caller must feed (initializers are excluded)."""
        return [NodeArg.from_type(s.name, s.type) for s in self._inputs if not s.has_default]

    def get_outputs(self) -> list[NodeArg]:
        """The graph outputs."""
        return [NodeArg.from_type(name, t) for name, t in self._outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Initializers that are also graph inputs, so a feed may replace them."""
        return [NodeArg.from_type(s.name, s.type) for s in self._inputs if s.has_default]

    def get_modelmeta(self) -> ModelMetadata:
        """The model's producer, graph name, description and custom metadata."""
        proto = self._model.proto
        return ModelMetadata(
            producer_name=proto.producer_name,
            graph_name=proto.graph.name,
            domain=proto.domain,
            description=proto.doc_string,
            graph_description=proto.graph.doc_string,
            version=proto.model_version,
            custom_metadata_map={p.key: p.value for p in proto.metadata_props},
        )

    def get_providers(self) -> list[str]:
        """The providers this session uses, in priority order."""
        return [p.name for p in self._providers]

    def get_provider_options(self) -> dict[str, dict[str, Any]]:
        """Each provider's options, as given."""
        return {p.name: dict(p.options) for p in self._providers}

    def get_execution_plan(self) -> ExecutionPlan:
        """Where each node runs, the partitions, and the copies between devices."""
        return self._compiled.execution_plan

    def end_profiling(self) -> str:
        """Write the events recorded so far in onnxruntime's profile format and stop profiling;
        returns the file's path, or "" when the session was created without ``enable_profiling``."""
        return self._profiler.write() if self._profiler is not None else ""

    def get_profiling_start_time_ns(self) -> int:
        """When profiling started (ns since the epoch), 0 without ``enable_profiling``."""
        return self._profiler.start_ns if self._profiler is not None else 0

    def get_session_options(self) -> SessionOptions:
        """The options the session was created with."""
        return self._options

    # -- running ------------------------------------------------------------------------
    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: dict[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[Any]:
        """Run the model; returns the requested outputs (all when ``output_names`` is None)."""
        wanted = self._output_positions(output_names)
        control = run_control.start(run_options, self._timeout_ms, self._max_bytes)
        feeds = self._feed_values(input_feed)
        try:
            values = self._intra_op(self._plan.execute, feeds, (), control)
        except EPFail as error:
            values = self._intra_op(self._fall_back(error).execute, feeds, (), control)
        return detach([_as_output(values[i], self._outputs[i][1]) for i in wanted], feeds)

    def _output_positions(self, output_names: Sequence[str] | None) -> list[int]:
        if not output_names:
            return list(range(len(self._outputs)))
        positions = []
        for name in output_names:
            if name not in self._output_index:
                raise unknown_name("output", name, [n for n, _ in self._outputs])
            positions.append(self._output_index[name])
        return positions

    def _unknown_input(self, name: str) -> InvalidArgument:
        return unknown_name("input", name, [s.name for s in self._inputs])

    def _feed_values(self, feed: dict[str, Any], placed: Any = ()) -> list[Any]:
        """The plan's input values; positions in ``placed`` hold device values already checked."""
        if not isinstance(feed, dict):
            raise InvalidArgument(f"input_feed must be a dict of input name to value, got {type(feed).__name__}")
        for name in feed:
            if name not in self._input_index:
                raise self._unknown_input(name)
        values = []
        for position, (spec, slot) in enumerate(zip(self._inputs, self._plan.input_slots)):
            if position in placed:
                values.append(feed[spec.name])
            elif spec.name in feed:
                values.append(spec.check(feed[spec.name]))
            elif spec.has_default:
                values.append(self._plan.template[slot])
            elif spec.type.kind == "optional":
                values.append(None)
            else:
                required = [s.name for s in self._inputs if not s.has_default and s.type.kind != "optional"]
                raise missing_input(spec, list(feed), [n for n in required if n not in feed])
        return values


def _as_output(value: Any, declared: TypeInfo | None) -> Any:
    """Outputs cross the API as onnxruntime returns them: tensors as numpy arrays."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic) or (declared is not None and declared.kind == "tensor"):
        return np.asarray(value)
    return value
