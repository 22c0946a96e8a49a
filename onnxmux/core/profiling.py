"""Per-kernel timing when ``SessionOptions.enable_profiling`` is set, written as a Chrome trace."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from datetime import datetime
from typing import Any, Callable

from onnxmux.core.executor import Plan


class Profiler:
    """Times every step of a plan; ``write`` saves the events as a Chrome trace JSON file."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start_ns = time.time_ns()
        self._origin = time.perf_counter_ns()
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def instrument(self, plan: Plan) -> Plan:
        """The same plan with every step's kernel timed."""
        steps = tuple((self._timed(step[0], step[4]),) + tuple(step[1:]) for step in plan.steps)
        return dataclasses.replace(plan, steps=steps)

    def _timed(self, run: Callable[..., Any], name: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            begin = time.perf_counter_ns()
            try:
                return run(*args)
            finally:
                end = time.perf_counter_ns()
                event = {
                    "name": name,
                    "cat": "Node",
                    "ph": "X",
                    "ts": (begin - self._origin) / 1e3,
                    "dur": (end - begin) / 1e3,
                    "pid": os.getpid(),
                    "tid": threading.get_ident(),
                }
                with self._lock:
                    self._events.append(event)

        return timed

    def write(self) -> str:
        """Save the events recorded so far to ``<prefix>_<date>_<time>.json``; returns the path."""
        path = f"{self.prefix}_{datetime.now().strftime('%Y-%m-%d_%H-%M-%S-%f')}.json"
        with self._lock:
            events = list(self._events)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"traceEvents": events}, handle)
        return path
