"""The CUDA device side: the device and its memory pool, a stream per run, the copies the
framework places between host and GPU (with DLPack for foreign GPU arrays), and the wrapper
that runs each kernel on the device and stream and names the node when memory runs out.

A ``run`` executes its steps on the calling thread, so each thread gets its own non-default
stream and a run's kernels are queued in order on it: runs from several threads overlap on the
GPU, and a copy to the host synchronizes only the stream of the run that asks for it. Streams
are blocking ones, so copies made on the default stream (``do_copy_in_default_stream``) are
ordered before the kernels that read them. Under ``ORT_PARALLEL`` the executor's worker threads
run the steps of one run; there each step waits for its own stream before returning, so a step
on another thread never reads a value still being written.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Callable, Iterator

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import InvalidArgument, ProviderError, RuntimeFailure
from onnxmux.core.provider import DataTransfer
from onnxmux.core.registry import KernelFactory
from onnxmux.providers.cuda.availability import device_count_reason, import_cupy
from onnxmux.providers.cuda.options import CUDASettings

#: DLPack device types of GPU memory CuPy can adopt without a copy (kDLCUDA, kDLCUDAManaged).
DLPACK_CUDA = (2, 13)
#: The executor names the threads of its ORT_PARALLEL pool with this prefix.
PARALLEL_THREAD_PREFIX = "onnxmux"
_BYTES = re.compile(r"allocating ([\d,]+) bytes")


class CUDARuntime:
    """One provider instance's device: CuPy, the ``cupy.cuda.Device``, its pool, per-thread streams.

    ``uploads`` and ``downloads`` count the host transfers made through it, so checks can
    compare them with the device crossings in the execution plan.
    """

    def __init__(self, settings: CUDASettings) -> None:
        cupy, reason = import_cupy()
        if cupy is None:
            raise ProviderError(f"CUDAExecutionProvider cannot start: {reason}")
        count, reason = device_count_reason(cupy)
        if reason is not None:
            raise ProviderError(f"CUDAExecutionProvider cannot start: {reason}")
        if settings.device_id >= count:
            raise InvalidArgument(
                f"CUDAExecutionProvider: option 'device_id' is {settings.device_id}, but this machine has "
                f"{count} CUDA device{'s' if count > 1 else ''} (device_id 0 to {count - 1})"
            )
        self.cp = cupy
        self.settings = settings
        self.device = cupy.cuda.Device(settings.device_id)
        self.pool = cupy.get_default_memory_pool()
        if settings.gpu_mem_limit is not None:
            with self.device:
                self.pool.set_limit(size=settings.gpu_mem_limit)
        self._local = threading.local()
        self.uploads = 0
        self.downloads = 0

    @property
    def name(self) -> str:
        """``cuda:<device_id>``."""
        return f"cuda:{self.settings.device_id}"

    def stream(self) -> Any:
        """The calling thread's stream on this device (made on first use)."""
        stream = getattr(self._local, "stream", None)
        if stream is None:
            with self.device:
                stream = self._local.stream = self.cp.cuda.Stream(non_blocking=False)
        return stream

    @contextlib.contextmanager
    def capture_stream(self) -> Iterator[Any]:
        """Within the block, the thread's stream is a new non-blocking one (for CUDA-graph capture)."""
        saved = getattr(self._local, "stream", None)
        with self.device:
            stream = self._local.stream = self.cp.cuda.Stream(non_blocking=True)
        try:
            with self.device, stream:
                yield stream
        finally:
            self._local.stream = saved

    def copy_stream(self) -> Any:
        """The stream uploads go on: the default one, or the run's (``do_copy_in_default_stream``)."""
        return self.cp.cuda.Stream.null if self.settings.do_copy_in_default_stream else self.stream()

    def upload(self, array: np.ndarray) -> Any:
        """A device copy of a host array."""
        with self.device, self.copy_stream():
            value = self.cp.asarray(array)
        self.uploads += 1
        return value

    def download(self, value: Any) -> np.ndarray:
        """A host copy of a device array; waits only for this thread's stream."""
        stream = self.stream()
        with self.device, stream:
            array = value.get(stream=stream)
        self.downloads += 1
        return array

    def adopt(self, value: Any) -> Any:
        """A GPU array from another library (PyTorch, JAX...) as a CuPy array sharing its memory."""
        with self.device:
            return self.cp.from_dlpack(value)

    def device_factory(self, factory: KernelFactory) -> KernelFactory:
        """``factory`` run with this device current, its kernel wrapped by ``on_device``."""

        def build(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
            with self.device:
                return self.on_device(ctx, factory(ctx, xp))

        return build

    def on_device(self, ctx: NodeContext, run: Callable[..., Any]) -> Callable[..., Any]:
        """``run`` made to execute on this device and the thread's stream, naming the node on OOM."""
        device = self.device
        stream_of = self.stream
        out_of_memory = self.cp.cuda.memory.OutOfMemoryError

        def step(*args: Any) -> Any:
            stream = stream_of()
            try:
                with device, stream:
                    result = run(*args)
            except out_of_memory as exc:
                self.pool.free_all_blocks()
                raise RuntimeFailure(
                    f"{ctx.describe()} on {self.name} ran out of GPU memory: {bytes_asked(exc)} "
                    f"({exc}); lower the batch size or raise gpu_mem_limit"
                ) from exc
            if threading.current_thread().name.startswith(PARALLEL_THREAD_PREFIX):
                stream.synchronize()
            return result

        step.cuda_node = ctx.describe()  # type: ignore[attr-defined]  # marks a GPU step for graph capture
        return step


def bytes_asked(exc: Exception) -> str:
    """The allocation size in a CuPy out-of-memory message, as ``N bytes asked``."""
    found = _BYTES.search(str(exc))
    return f"{found.group(1)} bytes asked" if found else "an allocation failed"


def dlpack_on_gpu(value: Any) -> bool:
    """Whether ``value`` is a DLPack-capable array living in CUDA memory (a torch CUDA tensor...)."""
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack_device__"):
        return False
    try:
        return value.__dlpack_device__()[0] in DLPACK_CUDA
    except Exception:
        return False


class CUDATransfer(DataTransfer):
    """The copies between host and GPU; GPU arrays that already are on the device pass as they are.

    ``to_device`` takes numpy arrays (one upload), CuPy arrays (no copy on this device, a
    peer copy from another one) and any DLPack GPU array such as a PyTorch CUDA tensor (no
    copy). ``to_host`` returns numpy arrays. The OrtValue/IOBinding path finds this transfer
    through the provider whose ``device`` starts with ``cuda``.
    """

    def __init__(self, runtime: CUDARuntime) -> None:
        self.runtime = runtime

    def to_device(self, value: Any) -> Any:
        """A value as a CuPy array on this provider's device."""
        if value is None:
            return None
        runtime = self.runtime
        if isinstance(value, runtime.cp.ndarray):
            if value.device.id == runtime.device.id:
                return value
            with runtime.device, runtime.stream():  # from another GPU: a copy on this one
                return runtime.cp.array(value, copy=True)
        if dlpack_on_gpu(value):
            return self.to_device(runtime.adopt(value))
        return runtime.upload(np.asarray(value))

    def to_host(self, value: Any) -> Any:
        """A CuPy array as a numpy array (host values pass unchanged)."""
        if value is None or not isinstance(value, self.runtime.cp.ndarray):
            return value
        return self.runtime.download(value)
