"""OpenCL programs built once per context and source, and their kernels, ready to launch.

Kernel sources are generated per operator and dtype (see the kernel modules); every node using
the same source shares one built program and one kernel object. Building is the expensive part
(PoCL caches binaries on disk too, so a second process builds faster).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import pyopencl as cl


class Kernel:
    """One kernel of a built program, launched with Python values for its arguments.

    ``set_args`` and the enqueue run under a lock: a kernel object holds its arguments, and
    sessions may run from several threads. Arguments convert as follows: ``int`` becomes a
    32-bit ``int``, ``float`` a ``float``, a numpy array passes its bytes (a geometry struct),
    and a device tensor (``device.CLTensor``) passes its buffer (NULL for an empty tensor).
    """

    def __init__(self, kernel: cl.Kernel, queue: cl.CommandQueue) -> None:
        self._kernel = kernel
        self._queue = queue
        self._lock = threading.Lock()

    def __call__(self, global_size: Sequence[int], local_size: Sequence[int] | None, *args: Any) -> None:
        """Enqueue the kernel over ``global_size`` work-items in groups of ``local_size``."""
        values = [_argument(a) for a in args]
        with self._lock:
            self._kernel.set_args(*values)
            cl.enqueue_nd_range_kernel(self._queue, self._kernel, tuple(global_size), local_size and tuple(local_size))


def _argument(value: Any) -> Any:
    if isinstance(value, (int, np.integer)):
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return np.float32(value)
    if isinstance(value, np.ndarray):
        return value
    return value.data


class ProgramCache:
    """The programs of one context, keyed by source; their kernels, keyed by source and name."""

    def __init__(self, context: cl.Context, queue: cl.CommandQueue) -> None:
        self._context = context
        self._queue = queue
        self._programs: dict[str, cl.Program] = {}
        self._kernels: dict[tuple[str, str], Kernel] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many programs were built."""
        return len(self._programs)

    def kernel(self, source: str, name: str) -> Kernel:
        """The kernel ``name`` of the program built from ``source`` (built on first request)."""
        key = (source, name)
        found = self._kernels.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._kernels.get(key)
            if found is None:
                program = self._programs.get(source)
                if program is None:
                    program = self._programs[source] = cl.Program(self._context, source).build()
                found = self._kernels[key] = Kernel(cl.Kernel(program, name), self._queue)
        return found
