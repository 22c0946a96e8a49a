"""Profiles in onnxruntime's format when ``SessionOptions.enable_profiling`` is set.

The file is the JSON array of Chrome trace events onnxruntime writes: ``Session`` events for
model loading, session initialization and each run, and one ``Node`` event per step run,
named ``<node>_kernel_time``, whose ``args`` carry onnxruntime's keys (``op_name``,
``provider``, ``node_index``, ``input_type_shape``, ``output_type_shape``, ``activation_size``,
``parameter_size``, ``output_size``). Copies between devices are ``Node`` events of their own
(``op_name`` MemcpyFromHost, MemcpyToHost or Memcpy) carrying the bytes they moved. Times are
whole microseconds since profiling started, as onnxruntime writes them.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from onnxmux.core.executor import Plan, StepLabel
from onnxmux.core.types import dtype_name


class Profiler:
    """Records a session's events; ``write`` saves them, as ``end_profiling`` does in onnxruntime."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start_ns = time.time_ns()
        self._origin = time.perf_counter_ns()
        self._loaded = self._origin
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.enabled = True

    def model_loaded(self, source: object) -> None:
        """Record the model's loading, from profiler creation to now (named as onnxruntime names it)."""
        self._loaded = time.perf_counter_ns()
        kind = "uri" if isinstance(source, (str, os.PathLike)) else "array"
        self.session_event(f"model_loading_{kind}", self._origin, self._loaded)

    def instrument(self, plan: Plan) -> Plan:
        """The plan with every step timed and each run recorded; also records session initialization.

        Called last in session creation, on the plan the session will run (parallel or not).
        """
        timed = copy.copy(plan)

        def time_run(run: Callable[..., Any], index: int) -> Callable[..., Any]:
            return self._timed(run, plan.labels[index], [plan.template[i] is not None for i in plan.steps[index][1]])

        timed.steps = tuple((time_run(step[0], i),) + tuple(step[1:]) for i, step in enumerate(plan.steps))
        timed.donated = {i: time_run(run, i) for i, run in plan.donated.items()}
        self.session_event("session_initialization", self._loaded, time.perf_counter_ns())
        return _ProfiledPlan(timed, self)

    def _timed(self, run: Callable[..., Any], label: StepLabel, parameters: Sequence[bool]) -> Callable[..., Any]:
        name = f"{label.name}_kernel_time"

        def timed(*args: Any) -> Any:
            begin = time.perf_counter_ns()
            result = run(*args)
            end = time.perf_counter_ns()
            if self.enabled:
                outputs = result if type(result) is tuple else (result,)
                self._add(
                    _event(
                        name, "Node", begin - self._origin, end - begin, _node_args(label, args, outputs, parameters)
                    )
                )
            return result

        return timed

    def session_event(self, name: str, begin: int, end: int) -> None:
        """Record a ``Session`` event between two ``perf_counter_ns`` readings."""
        if self.enabled:
            self._add(_event(name, "Session", begin - self._origin, end - begin, {}))

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def events(self) -> list[dict[str, Any]]:
        """The events recorded so far."""
        with self._lock:
            return list(self._events)

    def write(self) -> str:
        """Save the events to ``<prefix>_<date>_<time>.json`` and stop recording; returns the path."""
        path = f"{self.prefix}_{datetime.now().strftime('%Y-%m-%d_%H-%M-%S-%f')}.json"
        events = self.events()
        self.enabled = False
        Path(path).write_text(json.dumps(events), encoding="utf-8")
        return path


class _ProfiledPlan:
    """A plan whose every run is recorded as a ``model_run`` event; otherwise the plan itself."""

    def __init__(self, plan: Plan, profiler: Profiler) -> None:
        self._plan = plan
        self._profiler = profiler

    def execute(self, inputs: Sequence[Any], outer: Sequence[Any] = (), control: Any = None) -> list[Any]:
        """Run the plan, timing the whole run; ``control`` as ``Plan.execute`` takes it."""
        begin = time.perf_counter_ns()
        values = self._plan.execute(inputs, outer, control)
        self._profiler.session_event("model_run", begin, time.perf_counter_ns())
        return values

    __call__ = execute

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plan, name)


def _event(name: str, cat: str, ts_ns: int, dur_ns: int, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "cat": cat,
        "pid": os.getpid(),
        "tid": threading.get_native_id(),
        "dur": dur_ns // 1000,
        "ts": ts_ns // 1000,
        "ph": "X",
        "name": name,
        "args": args,
    }


def _node_args(
    label: StepLabel, inputs: Sequence[Any], outputs: Sequence[Any], parameters: Sequence[bool]
) -> dict[str, Any]:
    """onnxruntime's per-node ``args``; sizes are byte counts written as strings, as onnxruntime does.

    A copy is described by its host side on both ends (a device value may not tell its type or size).
    """
    if label.kind == "copy":
        host = inputs[0] if hasattr(inputs[0], "dtype") and hasattr(inputs[0], "shape") else outputs[0]
        inputs, outputs = (host,), (host,)
    activation = sum(_nbytes(v) for v, is_param in zip(inputs, parameters) if not is_param)
    parameter = sum(_nbytes(v) for v, is_param in zip(inputs, parameters) if is_param)
    output = sum(_nbytes(v) for v in outputs)
    args = {
        "op_name": label.op_type,
        "provider": label.provider,
        "node_index": str(label.node_index),
        "input_type_shape": [_type_shape(v) for v in inputs if v is not None],
        "output_type_shape": [_type_shape(v) for v in outputs if v is not None],
        "activation_size": str(activation),
        "parameter_size": str(parameter),
        "output_size": str(output),
    }
    if label.kind == "copy":
        args["bytes"] = output
    return args


def _type_shape(value: Any) -> dict[str, list]:
    """``{"float": [2, 3]}`` for a tensor; containers and opaque device values by their kind."""
    if isinstance(value, (list, tuple)):
        return {"sequence": [len(value)]}
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or shape is None:
        return {type(value).__name__: []}
    return {dtype_name(dtype): [int(d) for d in shape]}


def _nbytes(value: Any) -> int:
    """Bytes a value holds (0 where a device value does not say)."""
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    try:
        return int(getattr(value, "nbytes", 0) or 0)
    except (TypeError, ValueError):
        return 0
