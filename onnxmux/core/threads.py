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


#: (len(sys.modules) when found, the BLAS controllers found then).
_found: tuple[int, tuple[Any, ...]] = (-1, ())


def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the BLAS libraries loaded now (numpy's among them).

    Finding them scans the process's shared libraries, so the result is kept until a module is
    imported: only an import (scipy, torch...) loads another BLAS library."""
    global _found
    modules = len(sys.modules)
    if _found[0] != modules:
        import threadpoolctl

        controllers = threadpoolctl.ThreadpoolController().lib_controllers
        _found = (len(sys.modules), tuple(lib for lib in controllers if lib.user_api == "blas"))
    return _found[1]


class BlasThreads:
    """Calls functions with the BLAS pool at a session's thread count, restoring the caller's count after."""

    def __init__(self, intra_op_num_threads: int) -> None:
        self.threads = intra_op_num_threads if intra_op_num_threads > 0 else physical_cores()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with the BLAS pool at ``self.threads`` (nothing is changed when it already is)."""
        libraries = _blas_libraries()
        previous = [lib.get_num_threads() for lib in libraries]
        if all(count == self.threads for count in previous):
            return fn(*args)
        for lib in libraries:
            lib.set_num_threads(self.threads)
        try:
            return fn(*args)
        finally:
            for lib, count in zip(libraries, previous):
                lib.set_num_threads(count)
