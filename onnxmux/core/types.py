"""Static type information of values (tensor, sequence, map, optional) as the runtime sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import onnx
import onnx_ir as ir

Dim = Union[int, str, None]


@dataclass(frozen=True)
class TypeInfo:
    """The declared type of a value: ``kind`` is tensor, sequence, map, optional or unknown.

    ``dtype`` is the numpy element type of a tensor (ml_dtypes for low-precision kinds);
    ``shape`` holds ints for static dims, strings for symbolic ones and None for unknown,
    or is None altogether when even the rank is unknown. ``elem`` is the element type of a
    sequence or optional; ``key`` the key dtype of a map (whose values are ``elem``).
    """

    kind: str
    dtype: np.dtype | None = None
    shape: tuple[Dim, ...] | None = None
    elem: TypeInfo | None = None
    key: np.dtype | None = None

    @property
    def onnx_name(self) -> str:
        """The type as onnxruntime spells it: ``tensor(float)``, ``seq(tensor(float))``, ``map(string,tensor(float))``."""
        if self.kind == "tensor":
            return f"tensor({dtype_name(self.dtype)})"
        if self.kind in ("sequence", "optional"):
            inner = self.elem.onnx_name if self.elem else "undefined"
            return f"{'seq' if self.kind == 'sequence' else self.kind}({inner})"
        if self.kind == "map":
            inner = self.elem.onnx_name if self.elem else "undefined"
            return f"map({dtype_name(self.key)},{inner})"
        return "unknown"


UNKNOWN = TypeInfo("unknown")

_ONNX_NAMES = {
    ir.DataType.FLOAT: "float",
    ir.DataType.DOUBLE: "double",
    ir.DataType.STRING: "string",
}


def dtype_name(dtype: np.dtype | None) -> str:
    """onnxruntime's element-type name for a numpy dtype (``float``, ``int64``, ``float16``...)."""
    if dtype is None:
        return "undefined"
    try:
        data_type = ir.DataType.from_numpy(np.dtype(dtype))
    except (TypeError, ValueError):
        return str(dtype)
    return _ONNX_NAMES.get(data_type, data_type.name.lower())


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX ``TensorProto`` element type number."""
    return ir.DataType(elem_type).numpy()


def _shape_of(shape: ir.Shape | None) -> tuple[Dim, ...] | None:
    if shape is None:
        return None
    dims: list[Dim] = []
    for d in shape:
        if isinstance(d, int):
            dims.append(d)
        else:
            dims.append(d.value if isinstance(d, ir.SymbolicDim) else None)
    return tuple(dims)


def type_info(value: ir.Value | None) -> TypeInfo:
    """The TypeInfo of an IR value, from its declared or inferred type and shape."""
    if value is None or value.type is None:
        return UNKNOWN
    t = value.type
    if type(t) is not ir.TensorType:
        return _from_ir_type(t, value.shape)
    # Most values are tensors of a few kinds: one TypeInfo (frozen) per element type and shape,
    # found by onnx-ir's own dims (symbolic dims compare by name) before converting them.
    shape = value.shape
    key = (t.dtype, None if shape is None else shape.dims)
    found = _TENSOR_INFOS.get(key)
    if found is None:
        found = _TENSOR_INFOS[key] = TypeInfo("tensor", _safe_dtype(t.dtype), _shape_of(shape))
        if len(_TENSOR_INFOS) > _TENSOR_INFOS_KEPT:
            _TENSOR_INFOS.clear()
    return found


#: Tensor TypeInfos by (element type, shape), and how many are kept at most.
_TENSOR_INFOS: dict[tuple, TypeInfo] = {}
_TENSOR_INFOS_KEPT = 4096


def _from_ir_type(t: ir.TypeProtocol, shape: ir.Shape | None = None) -> TypeInfo:
    if isinstance(t, ir.TensorType):
        return TypeInfo("tensor", _safe_dtype(t.dtype), _shape_of(shape))
    if isinstance(t, ir.SequenceType):
        return TypeInfo("sequence", elem=_from_ir_type(t.elem_type))
    if isinstance(t, ir.OptionalType):
        return TypeInfo("optional", elem=_from_ir_type(t.elem_type, shape))
    if isinstance(t, ir.SparseTensorType):
        return TypeInfo("sparse_tensor", _safe_dtype(t.dtype), _shape_of(shape))
    return UNKNOWN


def _safe_dtype(data_type: ir.DataType) -> np.dtype | None:
    try:
        return data_type.numpy()
    except (TypeError, ValueError, NotImplementedError):
        return None


def type_info_from_proto(t: onnx.TypeProto) -> TypeInfo:
    """The TypeInfo of an ONNX TypeProto; used for map types, which onnx-ir does not model."""
    field = t.WhichOneof("value")
    if field in ("tensor_type", "sparse_tensor_type"):
        tt = getattr(t, field)
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
            )
        kind = "tensor" if field == "tensor_type" else "sparse_tensor"
        return TypeInfo(kind, numpy_dtype(tt.elem_type) if tt.elem_type else None, shape)
    if field == "sequence_type":
        return TypeInfo("sequence", elem=type_info_from_proto(t.sequence_type.elem_type))
    if field == "optional_type":
        return TypeInfo("optional", elem=type_info_from_proto(t.optional_type.elem_type))
    if field == "map_type":
        return TypeInfo(
            "map",
            key=numpy_dtype(t.map_type.key_type),
            elem=type_info_from_proto(t.map_type.value_type),
        )
    return UNKNOWN


def has_map(t: onnx.TypeProto) -> bool:
    """Whether a TypeProto mentions a map anywhere (onnx-ir cannot deserialize those)."""
    field = t.WhichOneof("value")
    if field == "map_type":
        return True
    if field == "sequence_type":
        return has_map(t.sequence_type.elem_type)
    if field == "optional_type":
        return has_map(t.optional_type.elem_type)
    return False
