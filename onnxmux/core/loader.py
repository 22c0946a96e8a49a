"""Loading a model: parse, check versions and external data, infer shapes, build the IR."""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, NamedTuple, Union

import numpy as np
import onnx
import onnx.inliner
import onnx_ir as ir
from onnx import numpy_helper
from google.protobuf.message import DecodeError

from onnxmux.core import bulk_attrs, contrib_schemas, raw_weights, validation, value_infos
from onnxmux.core.errors import InvalidGraph, InvalidProtobuf, NoSuchFile, UnsupportedModel
from onnxmux.core.external_data import ConfinedExternalTensor, SharedMaps, check_external_data, model_tensors
from onnxmux.core.limits import DEFAULT_MAX_TENSOR_BYTES, check_tensor_bytes
from onnxmux.core.node_attributes import subgraphs_of
from onnxmux.core.types import TypeInfo, has_map, type_info_from_proto

if TYPE_CHECKING:
    from onnxmux.core.custom_ops import SessionCustomOps

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
    #: The parsed model, for its metadata; its long list attributes and plain value infos
    #: are only on ``model`` (bulk_attrs.py, value_infos.py).
    proto: onnx.ModelProto
    #: The folder external data is read from; None for bytes given without ``session.external_data_dir``.
    base_dir: Path | None
    #: Types onnx-ir cannot represent (maps), by value name.
    declared_types: dict[str, TypeInfo] = field(default_factory=dict)

    @property
    def opsets(self) -> dict[str, int]:
        """Opset version per domain, with ``ai.onnx`` spelled as ``""``."""
        return {("" if d == "ai.onnx" else d): v for d, v in self.model.opset_imports.items()}


def load(
    source: ModelSource,
    external_data_dir: str | os.PathLike | None = None,
    max_tensor_bytes: int | None = None,
    custom_ops: SessionCustomOps | None = None,
    adjust: Callable[[onnx.ModelProto, Path | None], None] | None = None,
) -> LoadedModel:
    """Load a model from a path, serialized bytes or a ModelProto; ``custom_ops`` type their nodes;
    ``adjust`` may change the parsed proto first (the session options acting on the model, ``model_options.py``).

    Bytes and ModelProtos have no folder: their external data is read from ``external_data_dir``
    and refused without it. A sparse tensor whose dense form exceeds ``max_tensor_bytes`` (the
    default limit when None) is refused.
    """
    proto, base_dir, detached, text_checked = _read(source)
    if adjust is not None:
        adjust(proto, base_dir)  # the options change dims and weights, no text
    if not text_checked:
        validation.check_text(proto)
    if base_dir is None and external_data_dir:
        base_dir = Path(external_data_dir).resolve()
    _check_model(proto)
    tensors = list(model_tensors(proto))
    external_tensors = check_external_data(proto, base_dir, tensors)
    raw_initializers = validation.check_tensors(proto, detached, tensors)
    if proto.functions:
        proto = _inline_functions(proto)
    attribute_types = validation.check_nodes(proto)
    nested = _NESTING.intersection(attribute_types)
    _densify_sparse(proto.graph, base_dir, max_tensor_bytes or DEFAULT_MAX_TENSOR_BYTES, bool(nested))
    long_lists = bulk_attrs.detach_forests(proto)
    proto = custom_ops.infer_shapes(proto, _infer_shapes) if custom_ops else _infer_shapes(proto)
    validation.check_type_parameters(proto)
    declared = _strip_map_types(proto.graph, bool(nested))
    if not _LISTS.isdisjoint(attribute_types):
        long_lists += bulk_attrs.detach_long_lists(proto.graph)
    plain_infos = value_infos.take_plain_infos(proto.graph)
    try:
        model = ir.from_proto(proto)
    except Exception as exc:
        raise InvalidGraph(f"the model's graph is malformed: {exc}") from exc
    value_infos.give_plain_infos(model.graph, plain_infos)
    bulk_attrs.attach_long_lists(model.graph, long_lists)
    if base_dir is not None and external_tensors:
        _set_base_dir(model.graph, base_dir, external_tensors)
    _adopt_raw_initializers(model.graph, raw_initializers)
    _fix_initializer_inputs(model)
    name_nodes(model.graph)
    return LoadedModel(model, proto, base_dir, declared)


def _set_base_dir(graph: ir.Graph, base_dir: Path, external_tensors: int) -> None:
    """Tell the model's ``external_tensors`` external tensors where their files are: when they are
    all initializers of the main graph, as tensors whose files are confined already (checked
    once per file by ``check_external_data``), else by onnx-ir's walk over every tensor."""
    values = [v for v in graph.initializers.values() if isinstance(v.const_value, ir.ExternalTensor)]
    if len(values) != external_tensors:
        ir.external_data.set_base_dir(graph, base_dir)
        return
    maps = SharedMaps()
    for value in values:
        value.const_value = ConfinedExternalTensor(value.const_value, base_dir, maps)


def _adopt_raw_initializers(graph: ir.Graph, raw: dict[str, bytes | memoryview]) -> None:
    """Give the initializers read during validation arrays over those bytes.

    onnx-ir's proto-backed tensors copy their raw_data out of the proto on every ``numpy()``
    call (and the optimizer and compiler call it more than once); arrays over the bytes
    validation already read make every later read free.
    """
    for name, value in graph.initializers.items():
        tensor, data = value.const_value, raw.get(name)
        if data is None or not isinstance(tensor, ir.serde.TensorProtoTensor):
            continue
        dtype = tensor.dtype
        if dtype == ir.DataType.STRING or dtype.bitwidth % 8:  # packed sub-byte types keep onnx-ir's unpacking
            continue
        array = np.frombuffer(data, dtype=dtype.numpy().newbyteorder("<")).reshape(tuple(tensor.shape.numpy()))
        value.const_value = ir.Tensor(
            array, dtype=dtype, name=tensor.name, doc_string=tensor.doc_string, metadata_props=dict(tensor.metadata_props) or None
        )


#: Attribute types that may be (or hold) a sparse tensor or a subgraph; UNDEFINED may hold anything.
_NESTING = frozenset({
    onnx.AttributeProto.UNDEFINED, onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
})
#: Attribute types a long list may be (read in bulk, ``bulk_attrs.py``).
_LISTS = frozenset({onnx.AttributeProto.UNDEFINED, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS})

#: Before this IR version every initializer is also listed as a graph input.
_IR_SEPARATE_INITIALIZERS = 4


def _fix_initializer_inputs(model: ir.Model) -> None:
    """Before IR 4 an initializer had to be listed as a graph input, so there it is a constant,
    not an overridable input (as in onnxruntime): drop it from the inputs so the optimizer may
    fold and fuse it. The model then follows IR 4's rules, and says so."""
    if model.ir_version >= _IR_SEPARATE_INITIALIZERS:
        return
    graph = model.graph
    kept = [value for value in graph.inputs if not value.is_initializer()]
    if len(kept) != len(graph.inputs):
        graph.inputs.clear()
        graph.inputs.extend(kept)
    model.ir_version = _IR_SEPARATE_INITIALIZERS


def name_nodes(graph: ir.Graph) -> None:
    """Give every unnamed node (subgraphs included) a unique name, so plans and errors can cite it."""
    nodes = _all_nodes(graph)
    taken = {n.name for n in nodes if n.name}
    counter = 0
    for node in nodes:
        if not node.name:
            while f"{node.op_type}_{counter}" in taken:
                counter += 1
            node.name = f"{node.op_type}_{counter}"
            taken.add(node.name)


def _all_nodes(graph: ir.Graph) -> list[ir.Node]:
    """The graph's nodes, each followed by those of its subgraphs (onnx-ir's recursive iterator
    costs several times more per node)."""
    nodes: list[ir.Node] = []
    for node in graph:
        nodes.append(node)
        for sub in subgraphs_of(node):
            nodes.extend(_all_nodes(sub))
    return nodes


class _Parsed(NamedTuple):
    """What reading a model source gives the loader."""

    proto: onnx.ModelProto
    base_dir: Path | None
    #: The raw_data parsed around (``raw_weights.py``).
    detached: raw_weights.Detached | None = None
    #: Whether protobuf found every string field valid UTF-8 (``validation.parses_with_valid_text``).
    text_checked: bool = False


def _read(source: ModelSource) -> _Parsed:
    """The parsed model and its folder."""
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return _Parsed(proto, None)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse_around(bytes(source), "the model bytes", None)
    path = Path(source)
    try:
        with open(path, "rb") as file, _mapped(file) as data:
            return _parse_around(data, f"'{path}'", path.resolve().parent)
    except OSError as exc:
        raise NoSuchFile(f"cannot read model file '{path}': {exc.strerror or exc}") from exc


def _parse_around(data: bytes | memoryview, what: str, base_dir: Path | None) -> _Parsed:
    """The model parsed without the raw_data of its large initializers, copied out of ``data``
    (``raw_weights.py``)."""
    detached = raw_weights.detach(data)
    parsed = data if detached is None else detached.model
    proto = _parse(parsed, what)
    return _Parsed(proto, base_dir, detached, validation.parses_with_valid_text(parsed, proto))


@contextlib.contextmanager
def _mapped(file: BinaryIO) -> Iterator[memoryview | bytes]:
    """The file's bytes, memory-mapped while they are parsed (protobuf copies what it keeps):
    reading them into memory first would copy every weight once more."""
    try:
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError):  # empty files and files that cannot be mapped are read
        yield file.read()
        return
    try:
        with memoryview(mapping) as view:
            yield view
    finally:
        mapping.close()


def _parse(data: bytes | memoryview, what: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidProtobuf(f"{what} is not a valid ONNX model (truncated or not protobuf): {exc}") from exc
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


def _strip_map_types(graph: onnx.GraphProto, nested: bool = True) -> dict[str, TypeInfo]:
    """Move map-typed value infos into a side table: onnx-ir cannot deserialize map types.
    Subgraphs are looked for only when ``nested`` (some attribute may hold one)."""
    declared: dict[str, TypeInfo] = {}
    for infos in (graph.input, graph.output, graph.value_info):
        for info in infos:
            if info.HasField("type") and has_map(info.type):
                declared[info.name] = type_info_from_proto(info.type)
                info.ClearField("type")
    if not nested:
        return declared
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
    contrib_schemas.register_if_used(proto.graph)
    light = onnx.ModelProto(ir_version=proto.ir_version)
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    graph = light.graph
    for part in ("input", "value_info"):
        getattr(graph, part).extend(getattr(proto.graph, part))
    graph.output.extend(onnx.ValueInfoProto(name=o.name) for o in proto.graph.output)  # inferred, then compared
    graph.node.extend(_without_blob(node) for node in proto.graph.node)
    if len(graph.node) and len(graph.node[0].metadata_props):
        # Inference reads no metadata: the copy sheds it (exporters that record stack traces
        # there do so on every node, so the first one tells).
        for node in graph.node:
            node.ClearField("metadata_props")
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
    validation.check_declared_outputs(proto.graph, inferred.graph.output)
    known = {v.name for v in proto.graph.value_info}
    proto.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)
    for output, found in zip(proto.graph.output, inferred.graph.output):
        declared_kind, found_kind = output.type.WhichOneof("value"), found.type.WhichOneof("value")
        if found_kind is None or declared_kind not in (None, found_kind):
            continue
        if declared_kind is None or (found_kind == "tensor_type" and not output.type.tensor_type.HasField("shape")):
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


def dense_tensor(
    sparse: onnx.SparseTensorProto, base_dir: Path | None = None, max_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> onnx.TensorProto:
    """The dense TensorProto of a sparse one (linear [NNZ] or coordinate [NNZ, rank] indices)."""
    what = f"sparse tensor '{sparse.values.name}'"
    if any(d < 0 for d in sparse.dims):
        raise InvalidGraph(f"{what}: negative dimension in dims {list(sparse.dims)}")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(sparse.values.data_type)
    check_tensor_bytes(what, sparse.dims, dtype, max_bytes, InvalidGraph)
    folder = "" if base_dir is None else str(base_dir)
    values = numpy_helper.to_array(sparse.values, folder).reshape(-1)
    indices = numpy_helper.to_array(sparse.indices, folder).astype(np.int64)
    shape = tuple(sparse.dims)
    indices = _flat_indices(what, indices, shape, values.size)
    dense = np.full(math.prod(shape), "" if values.dtype == object else 0, dtype=values.dtype)
    dense[indices] = values
    return numpy_helper.from_array(dense.reshape(shape), sparse.values.name)


def _flat_indices(what: str, indices: np.ndarray, shape: tuple[int, ...], count: int) -> np.ndarray:
    """Linear indices of a sparse tensor's values; InvalidGraph when they do not fit ``shape``."""
    if indices.ndim not in (1, 2) or indices.shape[0] != count or (indices.ndim == 2 and indices.shape[1] != len(shape)):
        raise InvalidGraph(f"{what}: {indices.shape[0] if indices.ndim else 0} indices for {count} values "
                           f"(indices of shape {list(indices.shape)}, dims {list(shape)})")
    bounds = np.array([math.prod(shape)]) if indices.ndim == 1 else np.array(shape)
    for axis, column in enumerate(indices.reshape(count, -1).T):
        bad = column[(column < 0) | (column >= bounds[axis])]
        if bad.size:
            where = "" if indices.ndim == 1 else f" for dimension {axis}"
            raise InvalidGraph(f"{what}: index {int(bad[0])} is out of range{where} (size {int(bounds[axis])})")
    return indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), shape)


def _densify_sparse(graph: onnx.GraphProto, base_dir: Path | None, max_bytes: int, nested: bool = True) -> None:
    """Replace sparse initializers and Constant ``sparse_value``s by dense tensors (onnx-ir has no
    sparse tensors). The nodes are looked at only when ``nested`` (some attribute may be a sparse
    tensor or hold a subgraph)."""
    for sparse in graph.sparse_initializer:
        graph.initializer.append(dense_tensor(sparse, base_dir, max_bytes))
    graph.ClearField("sparse_initializer")
    if not nested:
        return
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                dense = dense_tensor(attr.sparse_tensor, base_dir, max_bytes)
                attr.Clear()
                attr.CopyFrom(onnx.helper.make_attribute("value", dense))
            if attr.HasField("g"):
                _densify_sparse(attr.g, base_dir, max_bytes)
            for sub in attr.graphs:
                _densify_sparse(sub, base_dir, max_bytes)
