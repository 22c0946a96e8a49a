"""A stand-in for CuPy backed by numpy and host memory, so the CUDA provider's own code (options,
device selection, streams, transfers, the kernel table and its shared kernels) runs without a GPU.

``FakeCuPy`` answers what ``onnxmux.providers.cuda`` asks of CuPy: ``cuda.runtime`` (device
count, driver and toolkit versions), ``cuda.Device``, ``cuda.Stream``, the memory pool, the
out-of-memory error, ``ndarray``, ``asarray`` and ``from_dlpack``; every other attribute is
numpy's, so the kernels compute with numpy as ``xp``. Arrays "on the device" are
``DeviceArray``s, a numpy subclass with CuPy's ``device`` and ``get``, so transfers can be counted.
The hand-written CuPy kernels cannot run here; the test provider uses the table without them.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import scipy.special

from onnxmux.providers.cuda import device as cuda_device
from onnxmux.providers.cuda.provider import CUDAExecutionProvider
from onnxmux.providers.cuda.table import build_registry


class DeviceArray(np.ndarray):
    """A host array posing as a CuPy array on device 0."""

    device = types.SimpleNamespace(id=0)

    def get(self, stream: Any = None) -> np.ndarray:
        """A host copy, as ``cupy.ndarray.get``."""
        return np.array(self.view(np.ndarray))


class FakeRuntimeError(RuntimeError):
    """``cupy_backends...CUDARuntimeError``: a CUDA status code and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeOutOfMemory(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError`` with CuPy's message."""

    def __init__(self, size: int, total: int, limit: int = 0) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")


class _Context:
    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FakeDevice(_Context):
    """``cupy.cuda.Device``: usable as a context manager."""

    def __init__(self, id: int = 0) -> None:
        self.id = id


class FakeStream(_Context):
    """``cupy.cuda.Stream``: records how often it was waited for."""

    null: FakeStream

    def __init__(self, non_blocking: bool = False) -> None:
        self.non_blocking = non_blocking
        self.synchronized = 0

    def synchronize(self) -> None:
        self.synchronized += 1


FakeStream.null = FakeStream()


class FakePool:
    """``cupy.get_default_memory_pool()``: remembers its limit and how often it was emptied."""

    def __init__(self) -> None:
        self.limit = 0
        self.emptied = 0

    def set_limit(self, size: int) -> None:
        self.limit = size

    def free_all_blocks(self) -> None:
        self.emptied += 1


class FakeCuPy:
    """The module ``cupy`` as the CUDA provider uses it; numpy for everything else."""

    __version__ = "0.0-fake"
    ndarray = DeviceArray

    def __init__(self, devices: int = 1, driver: int = 13020, toolkit: int = 13020, error: int | None = None) -> None:
        def device_count() -> int:
            if error is not None:
                raise FakeRuntimeError(error, f"CUDA error {error}")
            return devices

        runtime = types.SimpleNamespace(
            getDeviceCount=device_count,
            driverGetVersion=lambda: driver,
            runtimeGetVersion=lambda: toolkit,
            CUDARuntimeError=FakeRuntimeError,
        )
        memory = types.SimpleNamespace(OutOfMemoryError=FakeOutOfMemory)
        self.cuda = types.SimpleNamespace(runtime=runtime, Device=FakeDevice, Stream=FakeStream, memory=memory)
        self.pool = FakePool()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def get_default_memory_pool(self) -> FakePool:
        return self.pool

    def asarray(self, value: Any, dtype: Any = None) -> DeviceArray:
        return np.array(value, dtype=dtype).view(DeviceArray)

    def from_dlpack(self, value: Any) -> DeviceArray:
        return np.from_dlpack(value).view(DeviceArray)


# -- a strict stand-in: arrays that, like CuPy's, refuse to become numpy arrays behind one's back --

#: numpy functions that take host data on purpose (uploads), as CuPy's do.
_UPLOADS = {"asarray", "array", "asanyarray", "ascontiguousarray"}


def _reject_host_arrays(values: Any) -> None:
    """CuPy refuses numpy arrays as operands of its functions and operators."""
    for value in _flatten(values):
        if isinstance(value, np.ndarray):
            raise TypeError(f"Unsupported type {type(value)} (a host array mixed with device arrays)")


def _flatten(values: Any) -> Any:
    if isinstance(values, (list, tuple)):
        for value in values:
            yield from _flatten(value)
    elif isinstance(values, dict):
        yield from _flatten(list(values.values()))
    else:
        yield values


def _unwrap(value: Any) -> Any:
    if isinstance(value, StrictArray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_unwrap(value.start), _unwrap(value.stop), _unwrap(value.step))
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return StrictArray(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return StrictArray(np.asarray(value))  # CuPy reductions give 0-d arrays, not scalars
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class StrictArray:
    """A device array as numpy code sees a CuPy one: ``np.asarray`` on it fails, numpy arrays
    mixed into its operations fail, numpy's ufuncs and functions dispatch to the device."""

    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]
    device = types.SimpleNamespace(id=0)

    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed (a device array reached host code)")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _reject_host_arrays(inputs)
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        out = kwargs.get("out")
        if out is not None:
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        _reject_host_arrays((args, kwargs))
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._a, name)
        if callable(value):
            return lambda *a, **k: _wrap(value(*_unwrap(a), **_unwrap(k)))
        return _wrap(value)

    def get(self, stream: Any = None) -> np.ndarray:
        return np.array(self._a)

    def __getitem__(self, index: Any) -> Any:
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index: Any, value: Any) -> None:
        self._a[_unwrap(index)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(row) for row in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __repr__(self) -> str:
        return f"StrictArray({self._a!r})"


def _operator(name: str) -> Any:
    def apply(self: StrictArray, *other: Any) -> Any:
        _reject_host_arrays(other)
        result = getattr(self._a, name)(*_unwrap(other))
        return self if result is self._a else _wrap(result)

    return apply


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift", "rshift"):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(StrictArray, _form, _operator(_form))
for _form in ("__lt__", "__le__", "__eq__", "__ne__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(StrictArray, _form, _operator(_form))


class _StrictFunction:
    """A numpy function or ufunc as CuPy's: device arrays in and out, host arrays refused."""

    def __init__(self, func: Any, name: str) -> None:
        self.func = func
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.name not in _UPLOADS:
            _reject_host_arrays((args, kwargs))
        return _wrap(self.func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name: str) -> Any:
        return _StrictFunction(getattr(self.func, name), name)


class _StrictNamespace:
    """numpy (or one of its submodules) with every function made strict."""

    ndarray = StrictArray

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if isinstance(value, types.ModuleType):
            return _StrictNamespace(value)
        if callable(value) and not isinstance(value, type):
            return _StrictFunction(value, name)
        if name in ("ogrid", "mgrid"):
            return _StrictGrid(value)
        return value


class _StrictGrid:
    """``ogrid``/``mgrid``: index grids made on the device, as CuPy's."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid

    def __getitem__(self, index: Any) -> Any:
        return _wrap(self.grid[index])


#: ``cupyx.scipy.special`` as the shared kernels use it (erf), on strict arrays.
STRICT_SPECIAL = types.SimpleNamespace(erf=_StrictFunction(scipy.special.erf, "erf"))


class StrictCuPy(FakeCuPy):
    """FakeCuPy whose arrays are ``StrictArray``s: kernels that are not xp-clean fail here as on CuPy."""

    ndarray = StrictArray

    def __getattr__(self, name: str) -> Any:
        return getattr(_StrictNamespace(np), name)

    def asarray(self, value: Any, dtype: Any = None) -> StrictArray:
        return StrictArray(np.array(_unwrap(value), dtype=dtype))

    def from_dlpack(self, value: Any) -> StrictArray:
        return StrictArray(np.from_dlpack(value))


class HostCUDAProvider(CUDAExecutionProvider):
    """The CUDA provider with its shared kernel table, on ``FakeCuPy``: xp is numpy, memory the host's."""

    name = "CUDAOnHostTestExecutionProvider"
    aliases = ("cuda-host",)
    registry = build_registry(cupy_kernels=False)
    fake = FakeCuPy()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def __init__(self, options: Any = None) -> None:
        with using_cupy(self.fake):
            super().__init__(options)


class StrictCUDAProvider(HostCUDAProvider):
    """HostCUDAProvider on ``StrictCuPy``: checks that the shared kernels are xp-clean."""

    name = "CUDAOnStrictHostTestExecutionProvider"
    aliases = ("cuda-strict",)
    fake = StrictCuPy()


class using_cupy:
    """Within the block, the CUDA provider's device module imports ``fake`` as CuPy."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake

    def __enter__(self) -> Any:
        self.saved = cuda_device.import_cupy
        cuda_device.import_cupy = lambda: (self.fake, None)
        return self.fake

    def __exit__(self, *exc: Any) -> None:
        cuda_device.import_cupy = self.saved
