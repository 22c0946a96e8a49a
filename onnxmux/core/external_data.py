"""One confinement rule for every tensor whose bytes live outside the model file.

Initializers, sparse tensors, Constant ``value``/``sparse_value`` attributes, tensors in
model-local function bodies and in subgraphs at any depth all resolve against the model's
folder and pass the same check before any byte is read.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import onnx
import onnx_ir as ir

from onnxmux.core.errors import InvalidGraph

#: The session config entry naming the folder external data of a model given as bytes is read from.
EXTERNAL_DATA_DIR_KEY = "session.external_data_dir"


def _attribute_tensors(owner: str, attr: onnx.AttributeProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    where = f"{owner}, attribute '{attr.name}'"
    if attr.HasField("t"):
        yield where, attr.t
    for tensor in attr.tensors:
        yield where, tensor
    sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
    for tensor in [*sparse, *attr.sparse_tensors]:
        yield where, tensor.values
        yield where, tensor.indices
    for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
        yield from graph_tensors(graph)


def _node_tensors(nodes: Iterable[onnx.NodeProto], scope: str = "") -> Iterator[tuple[str, onnx.TensorProto]]:
    for node in nodes:
        for attr in node.attribute:
            if _holds_tensors(attr):  # most attributes hold numbers: no label is made for them
                yield from _attribute_tensors(f"{scope}node '{node.name or node.op_type}'", attr)


def _holds_tensors(attr: onnx.AttributeProto) -> bool:
    """Whether an attribute has a field ``_attribute_tensors`` reads (whatever its declared type)."""
    return bool(
        attr.HasField("t") or len(attr.tensors) or attr.HasField("sparse_tensor") or len(attr.sparse_tensors)
        or attr.HasField("g") or len(attr.graphs)
    )


def graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every TensorProto of a graph and its subgraphs, with where it sits (for messages)."""
    for tensor in graph.initializer:
        yield "initializer", tensor
    for sparse in graph.sparse_initializer:
        yield "sparse initializer", sparse.values
        yield "sparse initializer", sparse.indices
    yield from _node_tensors(graph.node)


#: What ``model_tensors`` yields, as a list.
TensorList = list[tuple[str, onnx.TensorProto]]


def model_tensors(proto: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every TensorProto of a model: its graph, then its local functions' bodies."""
    yield from graph_tensors(proto.graph)
    for function in proto.functions:
        yield from _node_tensors(function.node, f"function '{function.name}', ")


def check_external_data(proto: onnx.ModelProto, base_dir: Path | None, tensors: TensorList | None = None) -> int:
    """Refuse external data that leaves ``base_dir``, is malformed, or has no folder to come from;
    returns how many tensors have external data. ``tensors``: ``model_tensors(proto)`` when the
    caller has them already."""
    sizes: dict[str, int] = {}  # checked location -> file size: models keep most tensors in one file
    count = 0
    for where, tensor in model_tensors(proto) if tensors is None else tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_one(f"{where} '{tensor.name}'", tensor, base_dir, sizes)
            count += 1
    return count


def _check_one(what: str, tensor: onnx.TensorProto, base_dir: Path | None, sizes: dict[str, int]) -> None:
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if base_dir is None:
        raise InvalidGraph(
            f"{what}: external data '{location}' cannot be read: the model was given as bytes, which have "
            f"no folder; name one with the session config entry '{EXTERNAL_DATA_DIR_KEY}'"
        )
    if location not in sizes:
        sizes[location] = _file_size(what, location, base_dir)
    offset = _count(what, "offset", info.get("offset", "0"))
    size = sizes[location]
    length = size - offset if info.get("length") is None else _count(what, "length", info["length"])
    if offset + length > size or offset > size:
        raise InvalidGraph(
            f"{what}: external data in '{location}' (offset {offset}, length {length}) reaches past the end "
            f"of the file ({size} bytes)"
        )


def _file_size(what: str, location: str, base_dir: Path) -> int:
    """The size of an external-data file, after checking that it is a file inside ``base_dir``."""
    if "\x00" in location:
        raise InvalidGraph(f"{what}: external data location {location!r} contains a NUL byte")
    if not location or os.path.isabs(location) or Path(location).drive:
        raise InvalidGraph(f"{what}: external data location '{location}' is not a relative path")
    folder = os.path.normpath(os.path.abspath(base_dir))
    root = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(root, location))
    lexical = os.path.normpath(os.path.join(folder, location))
    if os.path.commonpath([root, target]) != root or os.path.commonpath([folder, lexical]) != folder:
        raise InvalidGraph(f"{what}: external data location '{location}' escapes the model's folder")
    if not os.path.isfile(target):
        raise InvalidGraph(f"{what}: external data file '{location}' does not exist")
    stat = os.stat(target)
    if stat.st_nlink > 1:  # a hard link could bring any file of the machine into the folder
        raise InvalidGraph(f"{what}: external data file '{location}' has {stat.st_nlink} hard links")
    return stat.st_size


class SharedMaps:
    """One read-only memory map per external-data file, shared by a model's tensors (onnx-ir
    opens and maps the whole file again for each tensor)."""

    def __init__(self) -> None:
        self._maps: dict[str, mmap.mmap] = {}

    def of(self, path: str | os.PathLike) -> mmap.mmap:
        """The map of the file at ``path``, made on first use."""
        key = os.fspath(path)
        found = self._maps.get(key)
        if found is None:
            with open(key, "rb") as file:
                found = self._maps[key] = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return found


class ConfinedExternalTensor(ir.ExternalTensor):
    """An external tensor whose file ``check_external_data`` has confined to ``base_dir`` already:
    onnx-ir's own containment check (path resolution and a stat per tensor) runs again only if
    the tensor's folder changes. Its data is read from the model's ``maps`` while the folder is
    unchanged (whole-byte element types; others load as onnx-ir loads them)."""

    __slots__ = ("_confined_dir", "_maps")

    def __init__(self, tensor: ir.ExternalTensor, base_dir: Path, maps: SharedMaps | None = None) -> None:
        super().__init__(
            tensor.location,
            tensor.offset,
            tensor.length,
            tensor.dtype,
            shape=tensor.shape,
            name=tensor.name,
            doc_string=tensor.doc_string,
            metadata_props=tensor.metadata_props or None,
            base_dir=base_dir,
        )
        self._confined_dir = base_dir
        self._maps = maps

    def _check_path_containment(self) -> None:
        if self.base_dir is not self._confined_dir:
            super()._check_path_containment()

    def _shares_map(self) -> bool:
        if self._maps is None or self.base_dir is not self._confined_dir or self.size == 0:
            return False
        return self.dtype != ir.DataType.STRING and self.dtype.bitwidth % 8 == 0

    def _load(self) -> None:
        if not self._shares_map():
            super()._load()
            return
        self._check_validity()
        self.raw = self._maps.of(self.path)
        dtype = np.dtype(self.dtype.numpy()).newbyteorder("<")
        array = np.frombuffer(self.raw, dtype=dtype, offset=self.offset or 0, count=self.size)
        self._array = array.reshape(self.shape.numpy())

    def release(self) -> None:
        """Drop the data; a shared map closes once no tensor or array uses it."""
        if self._maps is None:
            super().release()
        else:
            self._array = self.raw = None


def _count(what: str, key: str, text: str) -> int:
    """An offset or length: a decimal integer, zero or more."""
    if not (text or "0").isdigit():
        raise InvalidGraph(f"{what}: external data {key} '{text}' is not a non-negative integer")
    return int(text or "0")
