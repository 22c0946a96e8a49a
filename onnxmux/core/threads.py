"""Thread settings: a session runs its intra-op work on ``intra_op_num_threads`` threads, only while it runs.

onnxruntime's default intra-op thread count is the number of physical cores; onnxmux uses the
same default. While a session runs, numpy's BLAS pool (process-wide) is held at one thread and
the caller's count is put back after, leaving the user's own numpy settings alone between runs;
large matrix products are split into shards that the calling thread and the session's own
worker threads (``intra_op_num_threads - 1`` of them) take from a shared counter. A worker that
the operating system does not schedule in time simply takes no shard: on a machine whose cores
are busy the product costs what it costs on one thread, where a BLAS pool's threads would wait
on each other, and its idle workers would spin against the caller, making a run many times slower.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable, Sequence


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


class IntraOpThreads:
    """A session's intra-op threads: calls run with numpy's BLAS pool at one thread (the caller's
    count restored after) and, with more than one thread, with ``run_shards`` open to kernels."""

    def __init__(self, intra_op_num_threads: int) -> None:
        self.threads = intra_op_num_threads if intra_op_num_threads > 0 else physical_cores()
        self._workers: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with BLAS at one thread and this session's threads current in this thread."""
        previous_pool = current()
        _current.threads = self if self.threads > 1 else None
        libraries = _blas_libraries()
        previous = [get() for get, _ in libraries]
        try:
            if all(count == 1 for count in previous):
                return fn(*args)
            for _, set_count in libraries:
                set_count(1)
            try:
                return fn(*args)
            finally:
                for (_, set_count), count in zip(libraries, previous):
                    set_count(count)
        finally:
            _current.threads = previous_pool

    def run_shards(self, shards: Sequence[Callable[[], Any]]) -> None:
        """Run every shard once: the calling thread and the workers take them in turn from a
        shared counter; workers that have not started when the caller runs out are cancelled."""
        taken = itertools.count()

        def take() -> None:
            while (index := next(taken)) < len(shards):
                shards[index]()

        helpers = [self._pool().submit(take) for _ in range(min(self.threads, len(shards)) - 1)]
        try:
            take()
        finally:
            _join(helpers)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="onnxmux-intra-op")
            return self._workers


def _join(helpers: list[Future]) -> None:
    """Wait for the helpers that started (re-raising the first error); cancel the others."""
    errors = [f.exception() for f in helpers if not f.cancel()]
    for error in errors:
        if error is not None:
            raise error


_current = threading.local()


def current() -> IntraOpThreads | None:
    """The running session's intra-op threads in this thread, when it has more than one."""
    return getattr(_current, "threads", None)
