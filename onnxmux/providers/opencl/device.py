"""The OpenCL device side: choosing a device, the device tensor type, the runtime kernels use
as their ``xp``, and the DataTransfer the framework's copies go through.

One runtime (context, in-order queue, memory pool, program cache) exists per OpenCL device and
process; every session on that device shares it, so programs are built once. The queue is
in-order, so a kernel always sees the results of the kernels enqueued before it, and a pooled
buffer released by one step can be reused by a later one without synchronisation.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import numpy as np
import pyopencl as cl
import pyopencl.tools

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import DataTransfer
from onnxmux.providers.opencl.common import C_TYPES, check_size
from onnxmux.providers.opencl.program_cache import Kernel, ProgramCache

#: ``device_type`` option values.
DEVICE_TYPES = {"GPU": cl.device_type.GPU, "CPU": cl.device_type.CPU, "ALL": cl.device_type.ALL}


class CLTensor:
    """A C-contiguous tensor in an OpenCL buffer, with a numpy ``shape`` and ``dtype``.

    ``data`` is the buffer, or None for a tensor without elements (OpenCL has no empty
    buffers). Views (``reshape``) share the buffer. Tensors are never written after the kernel
    that made them ran, so sharing is safe. numpy refuses to use one directly: a device tensor
    reaching host code means a missing copy, and fails loudly.
    """

    __slots__ = ("data", "shape", "dtype")
    __array_ufunc__ = None

    def __init__(self, data: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.data = data
        self.shape = shape
        self.dtype = dtype

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        """Number of dims."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.size * self.dtype.itemsize

    def reshape(self, shape: Sequence[int]) -> CLTensor:
        """The same elements under another shape of the same size (a view, no copy)."""
        shape = tuple(int(d) for d in shape)
        if math.prod(shape) != self.size:
            raise ValueError(f"cannot reshape a tensor of shape {self.shape} into {shape}")
        return CLTensor(self.data, shape, self.dtype)

    def view(self, dtype: Any) -> CLTensor:
        """The same buffer read as another dtype of the same element size."""
        dtype = np.dtype(dtype)
        if dtype.itemsize != self.dtype.itemsize:
            raise ValueError(f"cannot view {self.dtype} elements as {dtype}")
        return CLTensor(self.data, self.shape, dtype)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("an OpenCL tensor reached host code without a copy to the host")

    def __repr__(self) -> str:
        return f"CLTensor(shape={self.shape}, dtype={self.dtype})"


class OpenCLRuntime:
    """Everything kernels need on one device; kernel factories receive it as ``xp``.

    ``uploads`` and ``downloads`` count the host transfers made through it, so tests can
    check that tensors stay on the device between OpenCL nodes.
    """

    def __init__(self, device: cl.Device) -> None:
        self.device = device
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)
        self.programs = ProgramCache(self.context, self.queue)
        self._pool = cl.tools.MemoryPool(cl.tools.ImmediateAllocator(self.queue))
        extensions = set(device.extensions.split())
        #: Whether float64 kernels may run (``cl_khr_fp64``).
        self.fp64 = "cl_khr_fp64" in extensions
        #: Whether float16 kernels may run (``cl_khr_fp16``).
        self.fp16 = "cl_khr_fp16" in extensions
        self.uploads = 0
        self.downloads = 0

    @property
    def description(self) -> str:
        """``device name (platform, OpenCL version)``."""
        return f"{self.device.name.strip()} ({self.device.platform.name.strip()}, {self.device.version.strip()})"

    def empty(self, shape: Sequence[int], dtype: Any) -> CLTensor:
        """An uninitialised tensor."""
        shape = tuple(int(d) for d in shape)
        dtype = np.dtype(dtype)
        size = check_size(shape)
        data = self._pool.allocate(size * dtype.itemsize) if size else None
        return CLTensor(data, shape, dtype)

    def upload(self, array: np.ndarray) -> CLTensor:
        """A device copy of a host array (the copy runs asynchronously, in queue order)."""
        array = np.asarray(array, order="C")
        if array.dtype not in C_TYPES:
            raise TypeError(f"OpenCL tensors cannot hold {array.dtype}")
        tensor = self.empty(array.shape, array.dtype)
        if tensor.data is not None:
            cl.enqueue_copy(self.queue, tensor.data, array, is_blocking=False)
        self.uploads += 1
        return tensor

    def download(self, tensor: CLTensor) -> np.ndarray:
        """The tensor as a new host array (waits for the kernels that make it)."""
        array = np.empty(tensor.shape, tensor.dtype)
        if tensor.data is not None:
            cl.enqueue_copy(self.queue, array, tensor.data, is_blocking=True)
        self.downloads += 1
        return array

    def kernel(self, source: str, name: str) -> Kernel:
        """Kernel ``name`` of the program built from ``source`` (built once per runtime)."""
        return self.programs.kernel(source, name)


class OpenCLTransfer(DataTransfer):
    """The copies the framework places between OpenCL and host nodes."""

    def __init__(self, runtime: OpenCLRuntime) -> None:
        self.runtime = runtime

    def to_device(self, value: Any) -> CLTensor | None:
        """A host array as an OpenCL tensor."""
        if value is None:
            return None
        if isinstance(value, CLTensor):
            raise TypeError("copy to the OpenCL device of a tensor already there")
        return self.runtime.upload(np.asarray(value))

    def to_host(self, value: Any) -> np.ndarray | None:
        """An OpenCL tensor as a host array."""
        if value is None:
            return None
        if not isinstance(value, CLTensor):
            raise TypeError(f"copy to the host of a {type(value).__name__}, not an OpenCL tensor")
        return self.runtime.download(value)


# -- device selection -----------------------------------------------------------------------


def _pick(candidates: list[Any], wanted: int | str | None, what: str) -> Any:
    """The candidate at index ``wanted`` or whose name contains it (case-insensitive)."""
    if wanted is None:
        return candidates[0]
    names = [c.name.strip() for c in candidates]
    if isinstance(wanted, int):
        if 0 <= wanted < len(candidates):
            return candidates[wanted]
        raise InvalidArgument(f"OpenCL {what} index {wanted} is out of range; {what}s: {_listing(names)}")
    for candidate, name in zip(candidates, names):
        if wanted.lower() in name.lower():
            return candidate
    raise InvalidArgument(f"no OpenCL {what} name contains '{wanted}'; {what}s: {_listing(names)}")


def _listing(names: list[str]) -> str:
    return ", ".join(f"[{i}] {n}" for i, n in enumerate(names)) or "none"


def select_device(platform: int | str | None = None, device: int | str | None = None, device_type: str = "ALL") -> cl.Device:
    """The device the options name: within the chosen platforms, devices of ``device_type``.

    Without a ``platform``, every platform's devices are candidates. GPUs come before other
    devices, so the default is the first GPU, or the first device when there is none;
    ``device`` then picks by index (in that order) or by name substring.
    """
    platforms = cl.get_platforms()
    if platform is not None:
        platforms = [_pick(platforms, platform, "platform")]
    candidates: list[cl.Device] = []
    for p in platforms:
        try:
            candidates.extend(p.get_devices(device_type=DEVICE_TYPES[device_type]))
        except cl.Error:  # a platform without devices of this type
            continue
    if not candidates:
        raise InvalidArgument(f"no OpenCL device of type {device_type} on {_listing([p.name for p in platforms])}")
    candidates.sort(key=lambda d: 0 if d.type & cl.device_type.GPU else 1)
    return _pick(candidates, device, "device")


_runtimes: dict[int, OpenCLRuntime] = {}
_runtimes_lock = threading.Lock()


def runtime_for(device: cl.Device) -> OpenCLRuntime:
    """The process-wide runtime of ``device``."""
    with _runtimes_lock:
        runtime = _runtimes.get(device.int_ptr)
        if runtime is None:
            runtime = _runtimes[device.int_ptr] = OpenCLRuntime(device)
        return runtime
