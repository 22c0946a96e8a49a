"""Arrow columns to model feeds and model outputs back to Arrow columns.

Tensor columns arrive as Arrow fixed-shape tensor extension arrays or (nested) list columns;
scalar numeric and string columns feed traditional-ML models. Outputs leave as columns whose
Arrow type follows from the output's declared ONNX type alone, so every batch of a run has the
same schema whether or not some of its rows failed (failed rows are nulls).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from onnxmux.core.errors import InvalidArgument

_ELEMENT_TYPES = {
    "float": np.float32, "double": np.float64, "float16": np.float16,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "string": np.object_,
}


def element_type(name: str) -> np.dtype:
    """The numpy dtype of an ONNX element type name (``float``, ``int64``, ``string``...)."""
    try:
        return np.dtype(_ELEMENT_TYPES[name])
    except KeyError:
        raise InvalidArgument(f"element type '{name}' is not supported in batch columns") from None


def arrow_type(dtype: np.dtype) -> pa.DataType:
    """The Arrow type holding elements of ``dtype``."""
    return pa.string() if dtype == np.object_ else pa.from_numpy_dtype(dtype)


def column_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: tensors as one array with the row axis first; ragged or null rows as an
    object array holding one value (or None) per row, for row-by-row handling."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column.type, pa.FixedShapeTensorType):
        if column.null_count == 0:
            return column.to_numpy_ndarray()
        return _objects(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        dense = _dense_lists(column)
        return dense if dense is not None else _objects(column)
    if column.null_count:
        return _objects(column)
    return column.to_numpy(zero_copy_only=False)


def _dense_lists(column: pa.Array) -> np.ndarray | None:
    """Nested lists of uniform lengths and no nulls as one array, else None."""
    shape = [len(column)]
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type):
        if values.null_count:
            return None
        lengths = np.asarray(values.value_lengths() if not pa.types.is_fixed_size_list(values.type) else
                             pa.array([values.type.list_size] * len(values)))
        if len(lengths) and (lengths != lengths[0]).any():
            return None
        shape.append(int(lengths[0]) if len(lengths) else 0)
        values = values.flatten()
    if values.null_count:
        return None
    return values.to_numpy(zero_copy_only=False).reshape(shape)


def _objects(column: pa.Array) -> np.ndarray:
    out = np.empty(len(column), dtype=object)
    for i, value in enumerate(column.to_pylist()):
        out[i] = None if value is None else np.asarray(value)
    return out


def stack_rows(values: np.ndarray) -> np.ndarray:
    """An object array of per-row values as one array; InvalidArgument when rows are missing or differ."""
    if values.dtype != object or not len(values) or isinstance(values[0], str):
        if values.dtype == object and any(v is None for v in values):
            raise InvalidArgument("a row has no value (null)")
        return values
    for i, value in enumerate(values):
        if value is None:
            raise InvalidArgument(f"row {i} has no value (null)")
    shapes = {np.shape(v) for v in values}
    if len(shapes) > 1:
        raise InvalidArgument(f"rows have different shapes: {sorted(shapes)[:3]}")
    return np.stack([np.asarray(v) for v in values])


class OutputColumn:
    """How one model output becomes one column: a tensor (row axis first) or a sequence of maps."""

    def __init__(self, output: str, type_name: str, rank: int | None) -> None:
        self.output = output
        match = re.fullmatch(r"tensor\((\w+)\)", type_name)
        mapping = re.fullmatch(r"seq(?:uence)?\(map\((\w+),\s*tensor\((\w+)\)\)\)", type_name)
        if match and rank:
            self.kind = "tensor"
            self.dtype = element_type(match.group(1))
            self.type = arrow_type(self.dtype)
            for _ in range(rank - 1):
                self.type = pa.list_(self.type)
        elif mapping:
            self.kind = "maps"
            self.type = pa.map_(arrow_type(element_type(mapping.group(1))), arrow_type(element_type(mapping.group(2))))
        else:
            raise InvalidArgument(
                f"output '{output}' has type {type_name} with rank {rank}: batch inference writes tensors "
                "with a row axis first, or sequences of maps"
            )

    def rows(self, value: Any) -> list[Any]:
        """The output of one run as one entry per row."""
        if self.kind == "maps":
            return [list(d.items()) for d in value]
        array = np.asarray(value)
        return list(array) if array.ndim > 1 else array.tolist()

    def column(self, rows: list[Any]) -> pa.Array:
        """Entries per row (None for a failed row) as an Arrow array of this output's type."""
        if self.kind == "tensor" and all(r is not None for r in rows) and rows and not pa.types.is_list(self.type):
            return pa.array(np.asarray(rows, dtype=self.dtype if self.dtype != np.object_ else object), type=self.type)
        if self.kind == "tensor":
            rows = [r.tolist() if isinstance(r, np.ndarray) else r for r in rows]
        return pa.array(rows, type=self.type)
