"""Loading a model: parse, check versions and external data, infer shapes, build the IR."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import onnx
import onnx.inliner
import onnx_ir as ir
from onnx import numpy_helper
from google.protobuf.message import DecodeError

from onnxmux.core.errors import InvalidGraph, UnsupportedModel
from onnxmux.core.types import TypeInfo, has_map, type_info_from_proto

ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto]

#: The newest opset of each domain this runtime implements.
SUPPORTED_OPSETS = {
    "": onnx.defs.onnx_opset_version(),
    "ai.onnx.ml": 5,
    "ai.onnx.preview.training": 1,
    "ai.onnx.preview": 1,
}


@dataclass
class LoadedModel:
    """A model ready for optimization and partitioning."""

    model: ir.Model
    proto: onnx.ModelProto
    base_dir: Path
    #: Types onnx-ir cannot represent (maps), by value name.
    declared_types: dict[str, TypeInfo] = field(default_factory=dict)

    @property
    def opsets(self) -> dict[str, int]:
        """Opset version per domain, with ``ai.onnx`` spelled as ``""``."""
        return {("" if d == "ai.onnx" else d): v for d, v in self.model.opset_imports.items()}


def load(source: ModelSource) -> LoadedModel:
    """Load a model from a path, serialized bytes or a ModelProto."""
    proto, base_dir = _read(source)
    _check_model(proto)
    check_external_data(proto, base_dir)
    _densify_sparse(proto.graph)
    if proto.functions:
        proto = _inline_functions(proto)
    proto = _infer_shapes(proto)
    declared = _strip_map_types(proto.graph)
    try:
        model = ir.from_proto(proto)
    except Exception as exc:
        raise InvalidGraph(f"the model's graph is malformed: {exc}") from exc
    ir.external_data.set_base_dir(model.graph, base_dir)
    name_nodes(model.graph)
    return LoadedModel(model, proto, base_dir, declared)


def name_nodes(graph: ir.Graph) -> None:
    """Give every unnamed node (subgraphs included) a unique name, so plans and errors can cite it."""
    taken = {n.name for n in ir.traversal.RecursiveGraphIterator(graph) if n.name}
    counter = 0
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if not node.name:
            while f"{node.op_type}_{counter}" in taken:
                counter += 1
            node.name = f"{node.op_type}_{counter}"
            taken.add(node.name)


def _read(source: ModelSource) -> tuple[onnx.ModelProto, Path]:
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return proto, Path.cwd()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "the model bytes"), Path.cwd()
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidGraph(f"cannot read model file '{path}': {exc.strerror or exc}") from exc
    return _parse(data, f"'{path}'"), path.resolve().parent


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidGraph(f"{what} is not a valid ONNX model (truncated or not protobuf): {exc}") from exc
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise InvalidGraph(f"{what} is not an ONNX model: it has no graph or no IR version")
    return proto


def _check_model(proto: onnx.ModelProto) -> None:
    if proto.ir_version > onnx.IR_VERSION:
        raise UnsupportedModel(
            f"the model's IR version {proto.ir_version} is newer than the newest supported, {onnx.IR_VERSION}"
        )
    for opset in proto.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        newest = SUPPORTED_OPSETS.get(domain)
        if newest is not None and opset.version > newest:
            raise UnsupportedModel(
                f"the model imports opset {opset.version} of domain '{domain or 'ai.onnx'}'; "
                f"the newest this runtime supports is {newest}"
            )


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of a graph: initializers, attribute tensors, nested subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_external_data(proto: onnx.ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's folder or do not exist."""
    root = os.path.realpath(base_dir)
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or Path(location).drive:
            raise InvalidGraph(f"initializer '{tensor.name}': external data location '{location}' is not a relative path")
        target = os.path.realpath(os.path.join(root, location))
        if os.path.commonpath([root, target]) != root:
            raise InvalidGraph(
                f"initializer '{tensor.name}': external data location '{location}' escapes the model's folder"
            )
        if not os.path.isfile(target):
            raise InvalidGraph(f"initializer '{tensor.name}': external data file '{location}' does not exist")
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        if length is not None and offset + int(length) > os.path.getsize(target):
            raise InvalidGraph(f"initializer '{tensor.name}': external data in '{location}' is shorter than declared")


def _strip_map_types(graph: onnx.GraphProto) -> dict[str, TypeInfo]:
    """Move map-typed value infos into a side table: onnx-ir cannot deserialize map types."""
    declared: dict[str, TypeInfo] = {}
    for infos in (graph.input, graph.output, graph.value_info):
        for info in infos:
            if info.HasField("type") and has_map(info.type):
                declared[info.name] = type_info_from_proto(info.type)
                info.ClearField("type")
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                declared.update(_strip_map_types(sub))
    return declared


def _infer_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Add inferred types and shapes; a model the inference rejects is kept as it is.

    Inference runs on a copy whose large initializers are declared as typed graph inputs
    instead, so the weights are not serialized again for onnx's C++ inference; the inferred
    value infos are then copied onto the model.
    """
    light = onnx.ModelProto(ir_version=proto.ir_version)
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    graph = light.graph
    for part in ("input", "output", "value_info"):
        getattr(graph, part).extend(getattr(proto.graph, part))
    graph.node.extend(_without_blob(node) for node in proto.graph.node)
    inputs = {i.name for i in graph.input}
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and math.prod(tensor.dims) <= _INFER_INLINE_ELEMENTS:
            graph.initializer.append(tensor)
        elif tensor.name not in inputs:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # inference is best effort: kernels also work without static shapes
        return proto
    known = {v.name for v in proto.graph.value_info}
    proto.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)
    for output, found in zip(proto.graph.output, inferred.graph.output):
        if not output.type.HasField("tensor_type") or not output.type.tensor_type.HasField("shape"):
            output.type.CopyFrom(found.type)
    return proto


def _without_blob(node: onnx.NodeProto) -> onnx.NodeProto:
    """The node, or an EPContext node without its compiled blob (inference needs none of it)."""
    if node.op_type != "EPContext":
        return node
    light = onnx.NodeProto(op_type=node.op_type, domain=node.domain, name=node.name)
    light.input.extend(node.input)
    light.output.extend(node.output)
    light.attribute.extend(a for a in node.attribute if a.name != "ep_cache_context")
    return light


#: Initializers up to this many elements stay in the copy shape inference sees (it may read their values).
_INFER_INLINE_ELEMENTS = 1024


def _inline_functions(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Expand calls of model-local functions into their bodies."""
    try:
        return onnx.inliner.inline_local_functions(proto)
    except Exception as exc:
        raise InvalidGraph(f"the model's local functions cannot be expanded: {exc}") from exc


def dense_tensor(sparse: onnx.SparseTensorProto) -> onnx.TensorProto:
    """The dense TensorProto of a sparse one (linear [NNZ] or coordinate [NNZ, rank] indices)."""
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    shape = tuple(sparse.dims)
    if indices.ndim == 2:
        indices = np.ravel_multi_index(tuple(indices.T), shape)
    dense = np.full(math.prod(shape), "" if values.dtype == object else 0, dtype=values.dtype)
    dense[indices] = values
    return numpy_helper.from_array(dense.reshape(shape), sparse.values.name)


def _densify_sparse(graph: onnx.GraphProto) -> None:
    """Replace sparse initializers and Constant ``sparse_value``s by dense tensors (onnx-ir has no sparse tensors)."""
    for sparse in graph.sparse_initializer:
        graph.initializer.append(dense_tensor(sparse))
    graph.ClearField("sparse_initializer")
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                dense = dense_tensor(attr.sparse_tensor)
                attr.Clear()
                attr.CopyFrom(onnx.helper.make_attribute("value", dense))
            if attr.HasField("g"):
                _densify_sparse(attr.g)
            for sub in attr.graphs:
                _densify_sparse(sub)
