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
