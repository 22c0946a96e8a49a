"""A claimed subgraph compiled for TensorRT: engines by input shapes, from the cache or the builder.

With explicit profiles (``trt_profile_*_shapes`` naming every input whose shape is not fixed),
one engine serves every shape within them and is built at session creation. With fixed input
shapes, likewise. Otherwise each new combination of input shapes builds an engine for exactly
those shapes (logged), as onnxruntime's TensorRT provider does without profiles.
Never run on hardware: see docs/tensorrt.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import onnx

from onnxmux.core.errors import ProviderError, RuntimeFailure
from onnxmux.providers.tensorrt.cache import BlobCache, EngineKey, GpuIdentity, load_or_build
from onnxmux.providers.tensorrt.engine import EngineRunner, ProfileShapes
from onnxmux.providers.tensorrt.export import content_digest, model_bytes
from onnxmux.providers.tensorrt.options import Profile, TensorrtSettings

logger = logging.getLogger("onnxmux")


def declared_shape(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    """A graph input's shape, None for each dimension that is not a fixed number."""
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


def engine_key(model: onnx.ModelProto, shapes: ProfileShapes, settings: TensorrtSettings, gpu: GpuIdentity) -> EngineKey:
    """The complete cache key of the engine of ``model`` built for ``shapes`` with ``settings`` on ``gpu``."""
    return EngineKey(
        subgraph=content_digest(model),
        shapes=tuple(sorted((name, *triple) for name, triple in shapes.items())),
        precision=(("fp16", settings.trt_fp16_enable), ("bf16", settings.trt_bf16_enable)),
        builder=(
            ("max_workspace_size", settings.trt_max_workspace_size),
            ("builder_optimization_level", settings.trt_builder_optimization_level),
        ),
        gpu=gpu,
    )


def profile_shapes(profile: Profile, declared: dict[str, tuple[int | None, ...]]) -> ProfileShapes | None:
    """Each input's (min, opt, max): from the explicit profile, or fixed; None when an input is neither."""
    shapes: ProfileShapes = {}
    for name, dims in declared.items():
        if name in profile.shapes:
            shapes[name] = profile.shapes[name]
        elif all(d is not None for d in dims):
            shapes[name] = (dims, dims, dims)  # type: ignore[assignment]
        else:
            return None
    return shapes


class TensorrtSubgraph:
    """The callable the partitioner runs for one subgraph: CuPy arrays in, CuPy arrays out."""

    def __init__(self, provider: Any, model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str], label: str) -> None:
        self.provider = provider
        self.model = model
        self.onnx_bytes = model_bytes(model)
        self.inputs, self.outputs, self.label = list(inputs), list(outputs), label
        self.declared = {v.name: declared_shape(v) for v in model.graph.input}
        dtypes = {v.name: v.type.tensor_type.elem_type for v in model.graph.output}
        self.output_dtypes = [onnx.helper.tensor_dtype_to_np_dtype(dtypes[name]) for name in self.outputs]
        settings: TensorrtSettings = provider.settings
        fixed = profile_shapes(settings.profile or Profile(), self.declared)
        if settings.profile is not None and fixed is None:
            logger.info("%s: trt_profile_*_shapes do not cover every input of unfixed shape; engines are built per input shapes", label)
        #: The one profile serving every call, or None when engines are built per input shapes.
        self.fixed_profile = fixed
        self._engines: dict[Any, EngineRunner] = {}
        self._lock = threading.Lock()
        if fixed is not None:
            self._engines[None] = self._load_or_build(fixed)
        else:  # engines come at the first run of each shape; a model TensorRT cannot parse falls back now
            with provider.gpu.device:
                provider.builder.parse(self.onnx_bytes, label)

    def __call__(self, *values: Any) -> tuple:
        shapes = tuple(tuple(v.shape) for v in values)
        runner = self._engine_for(shapes)
        gpu = self.provider.gpu
        with gpu.ordered() as stream:
            outputs = runner.run(values, stream)
            return tuple(o if o.dtype == d else o.astype(d) for o, d in zip(outputs, self.output_dtypes))

    def _engine_for(self, shapes: tuple[tuple[int, ...], ...]) -> EngineRunner:
        if self.fixed_profile is not None:
            for name, shape in zip(self.inputs, shapes):
                low, _, high = self.fixed_profile[name]
                if len(shape) != len(low) or any(not lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
                    raise RuntimeFailure(
                        f"{self.label}: input '{name}' has shape {shape}, outside the engine's profile (min {low}, max {high})"
                    )
            return self._engines[None]
        with self._lock:
            runner = self._engines.get(shapes)
            if runner is None:
                logger.info("%s: new input shapes %s; building a TensorRT engine for them", self.label, shapes)
                exact = {name: (shape, shape, shape) for name, shape in zip(self.inputs, shapes)}
                try:
                    runner = self._engines[shapes] = self._load_or_build(exact)
                except ProviderError as exc:
                    raise RuntimeFailure(str(exc)) from exc
            return runner

    def _load_or_build(self, shapes: ProfileShapes) -> EngineRunner:
        """The engine for ``shapes``: from the engine cache when enabled and usable, else built (and stored)."""
        provider = self.provider
        settings: TensorrtSettings = provider.settings
        cache = BlobCache(settings.trt_engine_cache_path, "onnxmux_trt_", ".engine") if settings.trt_engine_cache_enable else None
        key = engine_key(self.model, shapes, settings, provider.gpu_identity)
        return load_or_build(cache, key, lambda: provider.build(self.onnx_bytes, shapes, self.label), self._runner)

    def _runner(self, blob: bytes) -> EngineRunner:
        provider = self.provider
        with provider.gpu.device:
            return EngineRunner(provider.trt, provider.runtime, provider.gpu.cp, blob, self.inputs, self.outputs, self.label)
