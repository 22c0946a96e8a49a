"""The GPU side of the TensorRT provider, through CuPy: the device, a stream per thread, the copies.

The provider shares nothing with the CUDA provider but the device string ``cuda:<id>`` and
CuPy arrays as values: a value the CUDA provider made is read here as it is, with no copy.
Ordering with the CUDA provider's work goes through CUDA's legacy default stream, which every
blocking stream synchronizes with: an event recorded on it before an engine runs marks all work
queued so far on the device, and the default stream then waits for the engine's own event, so
later work on any blocking stream (the CUDA provider's streams are blocking) follows the engine.
Never run on hardware: see docs/tensorrt.md.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np

from onnxmux.core.errors import InvalidArgument, ProviderError
from onnxmux.core.provider import DataTransfer
from onnxmux.providers.tensorrt.availability import cuda_reason


class TrtDevice:
    """One CUDA device through CuPy: its identity (name, compute capability) and per-thread streams."""

    def __init__(self, device_id: int) -> None:
        reason = cuda_reason()
        if reason is not None:
            raise ProviderError(f"TensorrtExecutionProvider cannot start: {reason}")
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if device_id >= count:
            raise InvalidArgument(
                f"TensorrtExecutionProvider: option 'device_id' is {device_id}, but this machine has {count} "
                f"CUDA device(s) (device_id 0 to {count - 1})"
            )
        self.cp = cupy
        self.device_id = device_id
        self.device = cupy.cuda.Device(device_id)
        properties = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = properties["name"]
        self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        self.compute_capability = f"{properties['major']}.{properties['minor']}"
        self._local = threading.local()

    @property
    def name(self) -> str:
        """``cuda:<device_id>``, the device string the CUDA provider uses too."""
        return f"cuda:{self.device_id}"

    def stream(self) -> Any:
        """The calling thread's (blocking) stream on this device, made on first use."""
        stream = getattr(self._local, "stream", None)
        if stream is None:
            with self.device:
                stream = self._local.stream = self.cp.cuda.Stream(non_blocking=False)
        return stream

    @contextlib.contextmanager
    def ordered(self) -> Iterator[Any]:
        """The thread's stream, made to follow all work queued on the device and to precede later work."""
        stream = self.stream()
        legacy = self.cp.cuda.Stream.null
        with self.device, stream:
            before = self.cp.cuda.Event(disable_timing=True)
            before.record(legacy)
            stream.wait_event(before)
            yield stream
            after = self.cp.cuda.Event(disable_timing=True)
            after.record(stream)
            legacy.wait_event(after)


class TrtTransfer(DataTransfer):
    """Host arrays up to the device, CuPy arrays down; CuPy arrays already on the device pass as they are.

    Copies go on the legacy default stream, so they are ordered with every blocking stream's work
    (this provider's and the CUDA provider's) without knowing which stream made a value.
    """

    def __init__(self, gpu: TrtDevice) -> None:
        self.gpu = gpu

    def to_device(self, value: Any) -> Any:
        """A CuPy array on this device (no copy when it already is one there)."""
        if value is None:
            return None
        cp = self.gpu.cp
        if isinstance(value, cp.ndarray) and value.device.id == self.gpu.device_id:
            return value
        with self.gpu.device, cp.cuda.Stream.null:
            return cp.array(value, copy=True) if isinstance(value, cp.ndarray) else cp.asarray(np.asarray(value))

    def to_host(self, value: Any) -> Any:
        """A numpy copy of a CuPy array, once all work queued before it on the device is done."""
        if value is None or not isinstance(value, self.gpu.cp.ndarray):
            return value
        legacy = self.gpu.cp.cuda.Stream.null
        with self.gpu.device, legacy:
            return value.get(stream=legacy)
