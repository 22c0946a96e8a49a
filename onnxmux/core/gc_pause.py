"""Session creation with Python's cyclic garbage collector paused.

Loading, optimizing and compiling a model allocates many small objects that live on (the IR,
contexts, kernels), so the collector's generation thresholds trip again and again and each
full pass walks every object of the process: up to a fifth of a transformer's creation time.
Pausing it for the creation only defers that work; garbage made meanwhile is collected later.
"""

from __future__ import annotations

import functools
import gc
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def collector_paused(fn: F) -> F:
    """Run ``fn`` with the cyclic collector disabled, re-enabling it after if it was enabled."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return run  # type: ignore[return-value]
