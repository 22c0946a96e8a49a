"""Stopping a run from outside: ``RunOptions.terminate`` and the session's ``session.run_timeout_ms``.

The executor checks the active ``RunControl`` between steps and Loop/Scan check it in every
iteration; a check reads a flag and, with a timeout, the clock; no lock is taken. Subgraph
plans find the control of the run they belong to through a thread-local.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from onnxmux.core.errors import InvalidArgument, RuntimeFailure

#: onnxruntime's message for a run stopped by ``RunOptions.terminate``.
TERMINATED = "Exiting due to terminate flag being set to true."
#: Session config entry: a run taking longer than this many milliseconds is ended (0: no limit).
RUN_TIMEOUT_KEY = "session.run_timeout_ms"

_active = threading.local()


class RunControl:
    """One run's stop conditions: the caller's RunOptions and a deadline."""

    __slots__ = ("run_options", "deadline", "timeout_ms", "max_bytes")

    def __init__(self, run_options: Any, timeout_ms: int, max_bytes: int | None) -> None:
        self.run_options = run_options
        self.timeout_ms = timeout_ms
        #: The session's ``session.max_tensor_bytes``, None for the default (see onnxmux.core.limits).
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None

    def check(self) -> None:
        """Raise RuntimeFailure when the run was told to stop or ran out of time."""
        if self.run_options is not None and self.run_options.terminate:
            raise RuntimeFailure(TERMINATED)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RuntimeFailure(f"the run exceeded {RUN_TIMEOUT_KEY}={self.timeout_ms} and was ended")


def start(run_options: Any, timeout_ms: int, max_bytes: int | None) -> RunControl | None:
    """The control of a new run, or None when nothing can stop it and the limits are the
    defaults (no per-step cost then)."""
    if run_options is None and not timeout_ms and max_bytes is None:
        return None
    control = RunControl(run_options, timeout_ms, max_bytes)
    control.check()
    return control


def active() -> RunControl | None:
    """The control of the run executing on this thread."""
    return getattr(_active, "control", None)


def activate(control: RunControl | None) -> RunControl | None:
    """Make ``control`` this thread's active one; returns the previous one, to restore."""
    previous = getattr(_active, "control", None)
    _active.control = control
    return previous


def timeout_ms(options: Any) -> int:
    """The session's run timeout in milliseconds (0: none); InvalidArgument when malformed."""
    text = options.config(RUN_TIMEOUT_KEY, "0").strip()
    if not text.isdigit():
        raise InvalidArgument(f"session config entry '{RUN_TIMEOUT_KEY}' must be a whole number of milliseconds, got '{text}'")
    return int(text)
