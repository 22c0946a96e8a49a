"""Thread settings: numpy's BLAS pool runs a session at ``intra_op_num_threads``, only while it runs.

onnxruntime's default intra-op thread count is the number of physical cores; onnxmux uses the
same default. The CPU provider's matrix products and convolutions run inside the BLAS library
numpy links; its pool is process-wide, so a session sets it for the duration of each run and
puts back what the caller had, leaving the user's own numpy settings alone between runs.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import Any, Callable


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """The physical cores this process may run on (hyper-threads counted once), as onnxruntime counts them."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{topology}/physical_package_id") as package, open(f"{topology}/core_id") as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


#: A BLAS library's thread count: (get, set).
Counter = tuple[Callable[[], Any], Callable[[int], Any]]
#: (len(sys.modules) when found, the thread counters of the BLAS libraries found then).
_found: tuple[int, tuple[Counter, ...]] = (-1, ())


def _counter(lib: Any) -> Counter:
    """Get and set a library's thread count: a pthreads OpenBLAS's own two functions, called
    directly (threadpoolctl's methods cost a microsecond or two a call, several per run), else
    threadpoolctl's methods."""
    symbol = getattr(lib, "_get_symbol", None)
    if symbol is not None and lib.internal_api == "openblas" and getattr(lib, "threading_layer", "") == "pthreads":
        get, set_ = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if get is not None and set_ is not None:
            return get, set_
    return lib.get_num_threads, lib.set_num_threads


def _blas_libraries() -> tuple[Counter, ...]:
    """The thread counters of the BLAS libraries loaded now (numpy's among them), from threadpoolctl.

    Finding them scans the process's shared libraries, so the result is kept until a module is
    imported: only an import (scipy, torch...) loads another BLAS library."""
    global _found
    modules = len(sys.modules)
    if _found[0] != modules:
        import threadpoolctl

        controllers = threadpoolctl.ThreadpoolController().lib_controllers
        _found = (len(sys.modules), tuple(_counter(lib) for lib in controllers if lib.user_api == "blas"))
    return _found[1]


class BlasThreads:
    """Calls functions with the BLAS pool at a session's thread count, restoring the caller's count after."""

    def __init__(self, intra_op_num_threads: int) -> None:
        self.threads = intra_op_num_threads if intra_op_num_threads > 0 else physical_cores()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with the BLAS pool at ``self.threads`` (nothing is changed when it already is)."""
        libraries = _blas_libraries()
        previous = [get() for get, _ in libraries]
        if all(count == self.threads for count in previous):
            return fn(*args)
        for _, set_count in libraries:
            set_count(self.threads)
        try:
            return fn(*args)
        finally:
            for (_, set_count), count in zip(libraries, previous):
                set_count(count)
