"""Large weights kept out of protobuf: the model's bytes are parsed without them, then read in place.

Parsing a model copies every weight into protobuf's memory, and reading a tensor's ``raw_data``
copies it again into a Python bytes object. For models of 1 MiB or more (a file's memory map,
or bytes), the loader finds the ``raw_data`` of the main graph's large initializers in the
serialized bytes (the protobuf wire format of ModelProto.graph -> GraphProto.initializer ->
TensorProto.raw_data), parses a copy of the model without those fields, and copies those
weights once, each aligned, into one buffer that validation and the loader read instead.
Anything the scan does not expect (a repeated graph or raw_data field, a group, a truncated
field, a name given twice) leaves the bytes to the ordinary parse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

#: Serialized ModelProto below this size are parsed as they are (their weights are small).
MIN_MODEL_BYTES = 1 << 20
#: raw_data of at least this many bytes is detached: it holds more than 1,024 elements of any
#: type (16-byte complex128 included), so shape inference never needs the values.
MIN_RAW_BYTES = 16 * 1024 + 1

_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA, _TENSOR_DATA_LOCATION = 2, 8, 9, 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
#: Element types whose raw_data the loader reads as a numpy array directly (whole bytes per element).
_BYTE_ALIGNED = frozenset(
    {
        TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16,
        TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.DOUBLE,
        TensorProto.UINT32, TensorProto.UINT64, TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.BFLOAT16,
    }
)


class _Unexpected(Exception):
    """The bytes hold something the scan leaves to protobuf."""


@dataclass
class Detached:
    """The parse-ready bytes, and the raw_data taken out of them, by main-graph initializer index
    (with the initializer's name): read-only views of one buffer, each at a multiple of ``ALIGN``."""

    model: bytes
    spans: dict[int, tuple[int, int]]
    names: dict[int, str]
    weights: memoryview

    def raw(self, index: int, name: str) -> memoryview | None:
        """The raw_data detached from initializer ``index`` when it is named ``name``, else None."""
        span = self.spans.get(index)
        if span is None or self.names[index] != name:
            return None
        return self.weights[span[0] : span[1]]


#: Where each weight starts in the buffer they are copied to (numpy's kernels and BLAS take
#: unaligned arrays on slower paths, or copy them on every run).
ALIGN = 64


def detach(data: bytes | memoryview) -> Detached | None:
    """The model's bytes without the raw_data of its large initializers, which are copied out
    (``data``, a file's memory map say, is not referenced afterwards); None when there is nothing
    to detach or the bytes are not as expected (the ordinary parse then decides)."""
    view = memoryview(data)
    if len(view) < MIN_MODEL_BYTES or view.ndim != 1 or view.itemsize != 1:
        return None
    try:
        found = _detach(view)
    except (_Unexpected, IndexError, ValueError):
        return None
    if found is None:
        return None
    model, spans, names = found
    places, weights = _copied_out(view, spans)
    return Detached(model, places, names, weights)


def _copied_out(view: memoryview, spans: dict[int, tuple[int, int]]) -> tuple[dict[int, tuple[int, int]], memoryview]:
    """The spans of ``view`` copied into one new buffer, each at a multiple of ``ALIGN``: their
    places there, and a read-only view of it."""
    places: dict[int, tuple[int, int]] = {}
    total = 0
    for index, (start, stop) in spans.items():
        places[index] = (total, total + stop - start)
        total += -(-(stop - start) // ALIGN) * ALIGN
    buffer = np.empty(total + ALIGN, np.uint8)
    shift = -buffer.ctypes.data % ALIGN
    source = np.frombuffer(view, np.uint8)
    for index, (start, stop) in spans.items():
        at = shift + places[index][0]
        buffer[at : at + stop - start] = source[start:stop]
    del source  # no view of ``data`` outlives the call
    weights = memoryview(buffer[shift : shift + total]).toreadonly()
    return places, weights


def _detach(view: memoryview) -> tuple[bytes, dict[int, tuple[int, int]], dict[int, str]] | None:
    """The bytes to parse, and where the detached raw_data lies in ``view`` (with its tensor's name)."""
    fields = _fields(view, 0, len(view))
    graphs = [f for f in fields if f[0] == _MODEL_GRAPH]
    if len(graphs) != 1 or graphs[0][1] != _LENGTH:
        return None  # protobuf merges repeated graph fields: left to it
    _, _, graph_start, body_start, end = graphs[0]
    spans: dict[int, tuple[int, int]] = {}
    names: dict[int, str] = {}
    copied = body_start  # the graph's bytes up to here are kept as they are, or replaced below
    graph_pieces: list[bytes | memoryview] = []
    index = -1
    every: set[str] = set()
    for number, wire, start, inner, stop in _fields(view, body_start, end):
        if number != _GRAPH_INITIALIZER or wire != _LENGTH:
            continue
        index += 1
        name, cut = _large_raw_data(view, inner, stop)
        if name in every:
            return None  # names given twice are left to the ordinary path
        every.add(name)
        if cut is None:
            continue
        raw_start, raw_inner, raw_stop = cut
        graph_pieces.append(view[copied:start])
        tensor = bytes(view[inner:raw_start]) + bytes(view[raw_stop:stop])
        graph_pieces += [_key(_GRAPH_INITIALIZER, _LENGTH), _varint(len(tensor)), tensor]
        copied = stop
        spans[index] = (raw_inner, raw_stop)
        names[index] = name
    if not spans:
        return None
    graph_pieces.append(view[copied:end])
    graph = b"".join(graph_pieces)
    model = b"".join([view[:graph_start], _key(_MODEL_GRAPH, _LENGTH), _varint(len(graph)), graph, view[end:]])
    return model, spans, names


def _large_raw_data(view: memoryview, start: int, end: int) -> tuple[str, tuple[int, int, int] | None]:
    """A TensorProto's name, and (field start, data start, data end) of its raw_data when that is
    large and of a byte-aligned type (else None)."""
    found = None
    data_type, name, located = None, "", False
    for number, wire, field_start, inner, stop in _fields(view, start, end):
        if number == _TENSOR_RAW_DATA and wire == _LENGTH:
            if found is not None:
                raise _Unexpected("raw_data given twice")  # the last wins: left to protobuf
            found = (field_start, inner, stop)
        elif number == _TENSOR_DATA_TYPE and wire == _VARINT:
            data_type = _read_varint(view, inner)[0]
        elif number == _TENSOR_NAME and wire == _LENGTH:
            name = bytes(view[inner:stop]).decode("utf-8")
        elif number == _TENSOR_DATA_LOCATION:
            located = True  # external data (or a malformed location) is checked as it is
    if found is None or located or found[2] - found[1] < MIN_RAW_BYTES or data_type not in _BYTE_ALIGNED:
        return name, None
    return name, found


def _fields(view: memoryview, pos: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """(field number, wire type, start, payload start, end) of each field in ``view[pos:end]``."""
    found = []
    while pos < end:
        start = pos
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            inner = pos
            _, pos = _read_varint(view, pos)
        elif wire == _LENGTH:
            length, inner = _read_varint(view, pos)
            pos = inner + length
        elif wire == _FIXED64:
            inner, pos = pos, pos + 8
        elif wire == _FIXED32:
            inner, pos = pos, pos + 4
        else:
            raise _Unexpected(f"wire type {wire}")
        if pos > end or number == 0:
            raise _Unexpected("truncated field")
        found.append((number, wire, start, inner, pos))
    return found


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Unexpected("varint too long")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)
