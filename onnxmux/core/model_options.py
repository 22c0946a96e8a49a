"""Session options that change the model as it is loaded, as onnxruntime applies them.

``adjust_model`` runs on the parsed ModelProto before external data is checked and shapes are
inferred: free dimension overrides, initializers given as OrtValues, and external-data files
given from memory. ``options_from_model`` reads the session options a model carries in its
``ort_config`` metadata entry when ``ORT_LOAD_CONFIG_FROM_MODEL=1``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from onnxmux.core.errors import InvalidArgument, InvalidGraph
from onnxmux.core.options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, SessionOptions

#: The environment variable and metadata key onnxruntime uses for options embedded in a model.
LOAD_CONFIG_ENV = "ORT_LOAD_CONFIG_FROM_MODEL"
CONFIG_KEY = "ort_config"
_ENUMS = {
    "graph_optimization_level": GraphOptimizationLevel,
    "execution_mode": ExecutionMode,
    "execution_order": ExecutionOrder,
}


def adjust_model(proto: onnx.ModelProto, base_dir: Path, options: SessionOptions) -> None:
    """Apply the options' load-time changes to ``proto`` in place."""
    _override_dimensions(proto.graph, options._dimension_overrides)
    _replace_initializers(proto.graph, options._initializers)
    _read_files_in_memory(proto.graph, options._files_in_memory)


def options_from_model(proto: onnx.ModelProto, options: SessionOptions) -> SessionOptions:
    """The options with the model's embedded ``session_options`` applied (a copy), when enabled."""
    if os.environ.get(LOAD_CONFIG_ENV, "0") != "1":
        return options
    entry = next((p.value for p in proto.metadata_props if p.key == CONFIG_KEY), None)
    if entry is None:
        return options
    try:
        settings = json.loads(entry).get("session_options", {})
    except (ValueError, AttributeError) as exc:
        raise InvalidGraph(f"the model's '{CONFIG_KEY}' metadata is not a JSON object: {exc}") from exc
    merged = copy.copy(options)
    merged._config = dict(options._config)
    for key, value in settings.items():
        if key.startswith("_") or not hasattr(merged, key) or callable(getattr(merged, key)):
            raise InvalidGraph(f"the model's '{CONFIG_KEY}' sets unknown session option '{key}'")
        current = getattr(merged, key)
        kind = _ENUMS.get(key)
        setattr(merged, key, kind(int(value)) if kind else type(current)(value))
    return merged


def _override_dimensions(graph: onnx.GraphProto, overrides: dict[tuple[str, str], int]) -> None:
    if not overrides:
        return
    for value in graph.input:
        if not value.type.HasField("tensor_type"):
            continue
        for dim in value.type.tensor_type.shape.dim:
            size = overrides.get(("name", dim.dim_param)) if dim.dim_param else None
            if size is None and dim.denotation:
                size = overrides.get(("denotation", dim.denotation))
            if size is not None:
                dim.dim_value = size


def _replace_initializers(graph: onnx.GraphProto, values: dict[str, Any]) -> None:
    if not values:
        return
    by_name = {t.name: t for t in graph.initializer}
    for name, value in values.items():
        if name not in by_name:
            raise InvalidArgument(f"add_initializer: the model has no initializer '{name}'")
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        old = by_name[name]
        if array.shape != tuple(old.dims) or onnx.helper.tensor_dtype_to_np_dtype(old.data_type) != array.dtype:
            raise InvalidArgument(
                f"add_initializer: '{name}' is {onnx.helper.tensor_dtype_to_np_dtype(old.data_type)}{list(old.dims)} "
                f"in the model, got {array.dtype}{list(array.shape)}"
            )
        old.CopyFrom(numpy_helper.from_array(array, name))


def _read_files_in_memory(graph: onnx.GraphProto, files: dict[str, bytes]) -> None:
    if not files:
        return
    for tensor in graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        data = files.get(info.get("location", ""))
        if data is None:
            continue
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if "length" in info else len(data) - offset
        if offset + length > len(data):
            raise InvalidGraph(f"initializer '{tensor.name}': the in-memory file '{info['location']}' is shorter than declared")
        tensor.raw_data = data[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
