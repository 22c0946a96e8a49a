"""Building TensorRT engines from exported subgraphs, and running them on CuPy buffers.

Written against TensorRT 10's documented Python API and never executed: no machine of this
project has TensorRT and a GPU together (see docs/tensorrt.md).

``EngineBuilder`` parses the ONNX bytes into a network, sets the builder options (precision
flags, workspace limit, optimization level, timing cache, one optimization profile) and builds
a serialized engine, logging the builder's progress when a build takes long. ``EngineRunner``
deserializes one engine and runs it: input shapes and device addresses are set on an execution
context (one per calling thread at a time), outputs are CuPy arrays allocated for the shapes
TensorRT reports (through an output allocator when a shape depends on the data), and
``execute_async_v3`` queues the work on the stream it is given.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, Sequence

from onnxmux.core.errors import ProviderError, RuntimeFailure
from onnxmux.providers.tensorrt.options import TensorrtSettings

logger = logging.getLogger("onnxmux")

#: Seconds between progress lines while the builder works.
PROGRESS_INTERVAL_S = 10.0
#: An input's (min, opt, max) shapes, by name.
ProfileShapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def parser_errors(parser: Any) -> str:
    """The parser's errors as one line each, naming the node."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        lines.append(f"node {error.node_name() or error.node()} ({error.node_operator()}): {error.desc()}")
    return "; ".join(lines) or "no error reported"


def progress_monitor(trt: Any, label: str) -> Any:
    """A ``trt.IProgressMonitor`` logging the build's phases, at most one line per ``PROGRESS_INTERVAL_S``.

    TensorRT calls it from several threads, hence the lock.
    """

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.started = time.monotonic()
            self.last = self.started
            self.lock = threading.Lock()

        def _log(self, message: str) -> None:
            now = time.monotonic()
            with self.lock:
                due = now - self.last >= PROGRESS_INTERVAL_S
                if due:
                    self.last = now
            if due:
                logger.info("TensorRT build of %s, %.0f s: %s", label, now - self.started, message)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._log(f"{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            self._log(f"{phase_name}: step {step + 1}")
            return True

        def phase_finish(self, phase_name: str) -> None:
            self._log(f"{phase_name} done")

    return BuildProgress()


class EngineBuilder:
    """Builds serialized engines with one provider's settings."""

    def __init__(self, trt: Any, trt_logger: Any, settings: TensorrtSettings) -> None:
        self.trt = trt
        self.trt_logger = trt_logger
        self.settings = settings

    def parse(self, onnx_bytes: bytes, label: str) -> tuple[Any, Any, Any]:
        """A builder, and the network TensorRT's parser made of ``onnx_bytes`` (with the parser); raises ProviderError."""
        builder = self.trt.Builder(self.trt_logger)
        network = builder.create_network(0)
        parser = self.trt.OnnxParser(network, self.trt_logger)
        if not parser.parse(onnx_bytes):
            raise ProviderError(f"TensorRT's ONNX parser rejected {label}: {parser_errors(parser)}")
        return builder, network, parser

    def build(self, onnx_bytes: bytes, profile: ProfileShapes, timing_cache: bytes | None, label: str) -> tuple[bytes, bytes | None]:
        """The serialized engine for ``profile``, and the timing cache after the build (when enabled)."""
        trt, settings = self.trt, self.settings
        builder, network, parser = self.parse(onnx_bytes, label)  # the parser holds the weights until the build ends
        config = builder.create_builder_config()
        if settings.trt_max_workspace_size:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.trt_max_workspace_size)
        if settings.trt_fp16_enable:
            config.set_flag(trt.BuilderFlag.FP16)
        if settings.trt_bf16_enable:
            config.set_flag(trt.BuilderFlag.BF16)
        config.builder_optimization_level = settings.trt_builder_optimization_level
        cache = None
        if settings.trt_timing_cache_enable:
            cache = config.create_timing_cache(timing_cache or b"")
            config.set_timing_cache(cache, False)
        config.add_optimization_profile(self._profile(builder, network, profile, label))
        monitor = progress_monitor(trt, label)  # must outlive the builder objects, released below
        config.progress_monitor = monitor
        started = time.monotonic()
        serialized = builder.build_serialized_network(network, config)
        del config, network, parser, builder
        if serialized is None:
            raise ProviderError(f"TensorRT could not build an engine for {label} (see TensorRT's log above)")
        logger.info("TensorRT built %s in %.1f s", label, time.monotonic() - started)
        return bytes(serialized), (bytes(cache.serialize()) if cache is not None else None)

    def _profile(self, builder: Any, network: Any, shapes: ProfileShapes, label: str) -> Any:
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if tensor.is_shape_tensor:
                raise ProviderError(f"{label}: input '{tensor.name}' is a TensorRT shape tensor, which this provider does not feed")
            if tensor.name not in shapes:
                raise ProviderError(f"{label}: no shapes known for input '{tensor.name}'")
            low, opt, high = shapes[tensor.name]
            profile.set_shape(tensor.name, low, opt, high)
        return profile


def output_allocator(trt: Any, cp: Any) -> Any:
    """A ``trt.IOutputAllocator`` giving CuPy buffers to outputs whose shapes depend on the data."""

    class CupyOutputs(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name: str, memory: Any, size: int, alignment: int) -> int:
            buffer = self.buffers[tensor_name] = cp.empty(max(int(size), 1), dtype=cp.uint8)
            return buffer.data.ptr

        def reallocate_output_async(self, tensor_name: str, memory: Any, size: int, alignment: int, stream: Any) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(shape)

    return CupyOutputs()


class EngineRunner:
    """One deserialized engine, run with CuPy arrays; safe to call from several threads."""

    def __init__(self, trt: Any, runtime: Any, cp: Any, blob: bytes, inputs: Sequence[str], outputs: Sequence[str], label: str) -> None:
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise ProviderError(f"TensorRT could not deserialize the engine of {label}")
        self.trt, self.cp, self.engine, self.label = trt, cp, engine, label
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.dtypes = {name: cp.dtype(trt.nptype(engine.get_tensor_dtype(name))) for name in self.inputs + self.outputs}
        self._contexts: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, values: Sequence[Any], stream: Any) -> tuple:
        """Queue one inference on ``stream``; returns the outputs as CuPy arrays (ready when the stream is)."""
        try:
            context = self._contexts.get_nowait()
        except queue.Empty:
            context = self.engine.create_execution_context()
        try:
            return self._run(context, values, stream)
        finally:
            self._contexts.put(context)

    def _run(self, context: Any, values: Sequence[Any], stream: Any) -> tuple:
        cp = self.cp
        held = []
        for name, value in zip(self.inputs, values):
            array = cp.ascontiguousarray(value, dtype=self.dtypes[name])
            held.append(array)
            if not context.set_input_shape(name, array.shape):
                raise RuntimeFailure(f"{self.label}: TensorRT refuses shape {array.shape} for input '{name}'")
            context.set_tensor_address(name, array.data.ptr)
        results: dict[str, Any] = {}
        allocator = None
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # known only once the engine has run
                allocator = allocator or output_allocator(self.trt, cp)
                context.set_output_allocator(name, allocator)
            else:
                results[name] = cp.empty(shape, dtype=self.dtypes[name])
                context.set_tensor_address(name, results[name].data.ptr)
        if not context.execute_async_v3(stream.ptr):
            raise RuntimeFailure(f"{self.label}: TensorRT's execute_async_v3 failed (see TensorRT's log)")
        for name in self.outputs:
            if name not in results:
                shape = allocator.shapes[name]
                size = math.prod(shape)
                results[name] = allocator.buffers[name][: size * self.dtypes[name].itemsize].view(self.dtypes[name]).reshape(shape)
        return tuple(results[name] for name in self.outputs)
