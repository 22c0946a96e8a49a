"""OrtValue and OrtValueVector: a value (tensor, sequence, map, optional) held on a device.

A host tensor is a numpy array (shared, not copied, as onnxruntime shares the caller's
buffer); a device tensor is whatever the owning provider's data transfer made of it (an
OpenCL buffer, a CuPy array...). Moves go through that transfer; see ``devices.py``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core import devices
from onnxmux.core.devices import CPU, Device
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.types import dtype_name

#: DLPack's device type numbers for the devices onnxmux may hold (kDLCPU, kDLCUDA, kDLOpenCL).
_DLPACK_DEVICE_TYPES = {"cpu": 1, "cuda": 2, "opencl": 4}


def element_dtype(element_type: Any) -> np.dtype:
    """A numpy dtype from a numpy type or an ONNX ``TensorProto`` element-type number."""
    try:
        if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
            data_type = ir.DataType(int(element_type))
            return np.dtype(object) if data_type == ir.DataType.STRING else data_type.numpy()
        dtype = np.dtype(element_type)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"unknown element type {element_type!r}: {exc}") from exc
    return np.dtype(object) if dtype.kind in "USO" else dtype


def element_type_of(dtype: np.dtype) -> int:
    """The ONNX ``TensorProto`` element-type number of a numpy dtype (8 for strings)."""
    if dtype.kind in "USO":
        return int(ir.DataType.STRING)
    return int(ir.DataType.from_numpy(dtype))


class OrtValue:
    """A value on a device, with onnxruntime's ``OrtValue`` methods."""

    def __init__(self, value: Any, device: Device = CPU) -> None:
        self._value = value
        self._device = device

    # -- construction -------------------------------------------------------------------
    @classmethod
    def ortvalue_from_numpy(
        cls, numpy_obj: Any, /, device_type: str = "cpu", device_id: int = 0, vendor_id: int = -1
    ) -> OrtValue:
        """A tensor from a numpy array: shared on the cpu, copied to another device."""
        array = _host_array(numpy_obj)
        device = devices.resolve(device_type, device_id)
        return cls(device.to_device(array), device)

    @classmethod
    def ortvalue_from_numpy_with_onnx_type(cls, data: np.ndarray, /, onnx_element_type: int) -> OrtValue:
        """A cpu tensor over ``data``'s buffer, read as the given ONNX element type of the same size."""
        dtype = element_dtype(onnx_element_type)
        if dtype.itemsize != data.dtype.itemsize:
            raise InvalidArgument(f"cannot read {data.dtype} elements as {dtype} (element sizes differ)")
        return cls(np.ascontiguousarray(data).view(dtype))

    @classmethod
    def ortvalue_from_shape_and_type(
        cls,
        shape: Sequence[int],
        element_type: Any,
        device_type: str = "cpu",
        device_id: int = 0,
        vendor_id: int = -1,
        memory_info: Any = None,
    ) -> OrtValue:
        """A tensor of the given shape and element type (zero-filled) on a device."""
        if memory_info is not None:
            device_type, device_id = memory_info.name, memory_info.device_id
        dtype = element_dtype(element_type)
        array = np.full([int(d) for d in shape], "" if dtype == object else 0, dtype)
        device = devices.resolve(device_type, device_id)
        return cls(device.to_device(array), device)

    @classmethod
    def from_dlpack(cls, data: Any, /) -> OrtValue:
        """A tensor sharing memory with a DLPack producer (an object or a raw capsule)."""
        if not hasattr(data, "__dlpack__"):
            data = _Capsule(data)
        kind, index = data.__dlpack_device__()
        if kind == _DLPACK_DEVICE_TYPES["cpu"]:
            return cls(np.from_dlpack(data))
        names = {v: k for k, v in _DLPACK_DEVICE_TYPES.items()}
        device = devices.resolve(names.get(kind, f"dlpack{kind}"), index)
        xp = getattr(device.provider, "xp", None)
        if xp is None or not hasattr(xp, "from_dlpack"):
            raise InvalidArgument(f"the provider of {device.name} cannot import DLPack tensors")
        return cls(xp.from_dlpack(data), device)

    # -- inspection ---------------------------------------------------------------------
    def device_name(self) -> str:
        """The device type holding the value: ``cpu``, ``opencl``, ``cuda``..."""
        return self._device.type

    def is_tensor(self) -> bool:
        """Whether the value is a tensor."""
        return self._value is not None and not isinstance(self._value, (list, dict))

    def is_tensor_sequence(self) -> bool:
        """Whether the value is a sequence of tensors."""
        return isinstance(self._value, list)

    def is_sparse_tensor(self) -> bool:
        """Always False: onnxmux densifies sparse tensors."""
        return False

    def has_value(self) -> bool:
        """False for an optional value that holds nothing."""
        return self._value is not None

    def shape(self) -> list[int]:
        """The tensor's dims."""
        return [int(d) for d in self._tensor().shape]

    def _dtype(self) -> np.dtype:
        return np.dtype(self._tensor().dtype)

    def data_type(self) -> str:
        """The type as onnxruntime spells it: ``tensor(float)``, ``seq(tensor(int64))``..."""
        value = self._value
        if isinstance(value, list):
            inner = OrtValue(value[0], self._device).data_type() if value else "tensor(undefined)"
            return f"seq({inner})"
        if isinstance(value, dict):
            return "map"
        name = "string" if self._dtype().kind in "USO" else dtype_name(self._dtype())
        return f"tensor({name})"

    def element_type(self) -> int:
        """The ONNX element-type number of the tensor (1 for float)."""
        return element_type_of(self._dtype())

    def tensor_size_in_bytes(self) -> int:
        """The tensor's data size in bytes."""
        return math.prod(self.shape()) * self._dtype().itemsize

    def data_ptr(self) -> int:
        """The address of the first element: host arrays, or device arrays exposing one."""
        value = self._tensor()
        if isinstance(value, np.ndarray):
            return int(value.ctypes.data)
        interface = getattr(value, "__cuda_array_interface__", None)
        if interface is not None:
            return int(interface["data"][0])
        raise InvalidArgument(f"a tensor on {self._device.name} exposes no data pointer")

    # -- data ---------------------------------------------------------------------------
    def numpy(self) -> Any:
        """The tensor as a numpy array (the same buffer on the cpu, a copy from a device)."""
        if self._value is None or isinstance(self._value, dict):
            return self._value
        if isinstance(self._value, list):
            return [self._device.to_host(v) for v in self._value]
        return self._device.to_host(self._value)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        if copy:
            return np.array(array, dtype=dtype, copy=True)
        return np.asarray(array, dtype=dtype)

    def update_inplace(self, data: Any) -> None:
        """Overwrite the tensor with ``data`` (same shape and type); on the cpu the buffer is kept.

        On another device the new contents are uploaded through the provider's transfer,
        which may give the tensor a new buffer.
        """
        source = data.numpy() if isinstance(data, OrtValue) else data
        if not isinstance(source, np.ndarray):
            raise InvalidArgument("data must be a numpy.ndarray or an OrtValue.")
        if list(source.shape) != self.shape() or np.dtype(source.dtype) != self._dtype():
            raise InvalidArgument(
                f"update_inplace: got {source.dtype}{list(source.shape)}, the value holds {self._dtype()}{self.shape()}"
            )
        if self._device.transfer is None:
            np.copyto(self._value, source)
        else:
            self._value = self._device.to_device(np.ascontiguousarray(source))

    def __dlpack__(self, *, stream: Any = None) -> Any:
        value = self._tensor()
        if not hasattr(value, "__dlpack__"):
            raise InvalidArgument(f"a tensor on {self._device.name} cannot be exported through DLPack")
        return value.__dlpack__() if stream is None else value.__dlpack__(stream=stream)

    def __dlpack_device__(self) -> tuple[int, int]:
        value = self._tensor()
        if hasattr(value, "__dlpack_device__"):
            return tuple(value.__dlpack_device__())
        return _DLPACK_DEVICE_TYPES.get(self._device.type, 0), self._device.id

    def _tensor(self) -> Any:
        if not self.is_tensor():
            raise InvalidArgument(f"the OrtValue holds a {type(self._value).__name__}, not a tensor")
        return self._value

    def __repr__(self) -> str:
        return f"OrtValue({self.data_type()} on {self._device.name})"


class OrtValueVector:
    """A list of OrtValues, as onnxruntime's ``OrtValueVector``."""

    def __init__(self, values: Iterable[OrtValue] = ()) -> None:
        self._values = list(values)

    def push_back(self, value: OrtValue) -> None:
        """Append a value."""
        if not isinstance(value, OrtValue):
            raise InvalidArgument(f"OrtValueVector holds OrtValues, got {type(value).__name__}")
        self._values.append(value)

    def push_back_batch(self, arrays: Sequence[Any], *_: Any) -> None:
        """Append a cpu OrtValue per array (DLPack producers are imported without a copy)."""
        for array in arrays:
            self.push_back(OrtValue.from_dlpack(array) if hasattr(array, "__dlpack__") else OrtValue(_host_array(array)))

    def reserve(self, size: int) -> None:
        """Accepted for compatibility; a Python list grows as needed."""

    def shrink_to_fit(self) -> None:
        """Accepted for compatibility; a Python list grows as needed."""

    def element_type_at(self, index: int) -> int:
        """The ONNX element type of value ``index``."""
        return self._values[index].element_type()

    def dlpack_at(self, index: int) -> Any:
        """A DLPack capsule of value ``index``."""
        return self._values[index].__dlpack__()

    def to_dlpacks(self, *_: Any) -> list[Any]:
        """A DLPack capsule per value."""
        return [v.__dlpack__() for v in self._values]

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: int) -> OrtValue:
        return self._values[index]

    def __iter__(self):
        return iter(self._values)


def _host_array(obj: Any) -> np.ndarray:
    """A C-contiguous numpy array of ``obj`` (strings as object arrays, as onnxruntime holds them)."""
    array = obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    if array.dtype.kind in "US":
        return array.astype(object)
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


class _Capsule:
    """Wraps a raw DLPack capsule (legacy producers) so numpy can import it; assumed on the cpu."""

    def __init__(self, capsule: Any) -> None:
        self.capsule = capsule

    def __dlpack__(self, **_: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)
