"""CUDA graphs (``enable_cuda_graph``): capture a run's GPU kernels once per input signature
(shapes and dtypes) and replay them, so a steady-state run has no Python dispatch per node.

A plan can be captured when its steps are: uploads of graph inputs, CUDA kernels, and downloads
of graph outputs. The first run of a signature runs normally (it also warms up kernel
compilation and cuBLAS), then the kernels are captured on the run's stream against static input
buffers that later runs copy their feeds into; every value the kernels make stays alive with
the graph, so the memory pool never hands its buffers to anything else. Where capture is
impossible (a node on the CPU, a copy to the host mid-run for a shape, a kernel that reads a
value on the host, parallel execution, profiling) the plan runs normally and the reason is
logged once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import numpy as np

from onnxmux.core.executor import Plan, store

logger = logging.getLogger("onnxmux")


def capture_blocker(plan: Plan, transfer: Any) -> str | None:
    """Why ``plan`` cannot be captured as a whole, or None when its steps allow it."""
    if type(plan) is not Plan:
        return f"the plan is a {type(plan).__name__} (parallel execution or profiling), which runs steps from Python"
    if not any(hasattr(step[0], "cuda_node") for step in plan.steps):
        return "no node runs on the GPU"
    copies = (transfer.to_device, transfer.to_host)
    for run, _, _, _, description in plan.steps:
        if not hasattr(run, "cuda_node") and run not in copies and not description.startswith("copy of"):
            return f"{description}: a node off the GPU"
    for run, ins, outs, _, description in plan.steps:
        if run == transfer.to_device and ins[0] in plan.input_slots:
            continue
        if run == transfer.to_host and outs[0] in plan.output_slots:
            continue
        if not hasattr(run, "cuda_node"):
            return f"{description} in the middle of the run (a value read on the host)"
    return None


class _Captured:
    """One signature's graph, the static buffers it reads and writes, and the slot list holding them."""

    def __init__(self, graph: Any, slots: list[Any]) -> None:
        self.graph = graph
        self.slots = slots
        self.lock = threading.Lock()


class CUDAGraphPlan(Plan):
    """A plan that replays captured CUDA graphs; falls back to the wrapped plan where it cannot."""

    def __init__(self, plan: Plan, provider: Any) -> None:
        super().__init__(plan.template, plan.input_slots, plan.outer_slots, plan.output_slots, plan.steps)
        self.inner = plan
        self.runtime = provider.runtime
        self.transfer = provider.data_transfer
        self.blocker = capture_blocker(plan, self.transfer)
        self.uploads = [s for s in plan.steps if s[0] == self.transfer.to_device]
        self.kernels = [s for s in plan.steps if hasattr(s[0], "cuda_node")]
        self.downloads = [s for s in plan.steps if s[0] == self.transfer.to_host]
        #: Signature -> its captured graph, or the reason it could not be captured.
        self.graphs: dict[tuple, _Captured | str] = {}
        self._lock = threading.Lock()
        self._logged: set[str] = set()

    def _log_once(self, reason: str) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            logger.warning("CUDA graph not used: %s; running node by node", reason)

    def execute(self, inputs: Sequence[Any], outer: Sequence[Any] = (), control: Any = None) -> list[Any]:
        """Replay the signature's graph; the first run of a signature runs normally, then captures.

        ``control`` (terminate, timeout) is checked by the runs that go node by node; a replay is
        one launch and runs to its end."""
        if self.blocker is not None:
            self._log_once(self.blocker)
            return self.inner.execute(inputs, outer, control)
        signature = tuple((getattr(v, "shape", None), str(getattr(v, "dtype", None))) for v in inputs)
        captured = self.graphs.get(signature)
        if isinstance(captured, _Captured):
            return self._replay(captured, inputs)
        if isinstance(captured, str):
            self._log_once(captured)
            return self.inner.execute(inputs, outer, control)
        outputs = self.inner.execute(inputs, outer, control)  # warm-up: compiles kernels, makes cuBLAS handles
        with self._lock:
            if signature not in self.graphs:
                self.graphs[signature] = self._capture(inputs)
        return outputs

    __call__ = execute

    def _capture(self, inputs: Sequence[Any]) -> _Captured | str:
        """Capture the plan's kernels against static copies of ``inputs``, or the reason it failed.

        The kernels are captured on a non-blocking stream of their own (made the thread's stream
        meanwhile), so nothing queued on the legacy default stream can invalidate the capture.
        """
        runtime = self.runtime
        slots = self.inner.initial_slots(inputs, ())
        with runtime.device, runtime.stream():
            for run, ins, outs, _, _ in self.uploads:
                slots[outs[0]] = runtime.cp.array(run(slots[ins[0]]), copy=True)
            runtime.stream().synchronize()
        description = ""
        with runtime.capture_stream() as stream:
            try:
                stream.begin_capture()
                try:
                    for run, ins, outs, _, description in self.kernels:
                        store(slots, outs, run(*[slots[i] for i in ins]))
                finally:
                    graph = stream.end_capture()
            except Exception as exc:
                return f"capture failed at '{description}': {type(exc).__name__}: {exc}"
        return _Captured(graph, slots)

    def _replay(self, captured: _Captured, inputs: Sequence[Any]) -> list[Any]:
        runtime = self.runtime
        slots = captured.slots
        with captured.lock, runtime.device:
            stream = runtime.stream()
            with stream:
                feeds = dict(zip(self.input_slots, inputs))
                for _, ins, outs, _, _ in self.uploads:
                    value = feeds[ins[0]]
                    if isinstance(value, runtime.cp.ndarray) or not hasattr(value, "__array_interface__"):
                        runtime.cp.copyto(slots[outs[0]], self.transfer.to_device(value))
                    else:
                        slots[outs[0]].set(np.ascontiguousarray(value), stream=stream)
                captured.graph.launch(stream)
                host = {outs[0]: runtime.download(slots[ins[0]]) for _, ins, outs, _, _ in self.downloads}
        return [host[i] if i in host else feeds.get(i, slots[i]) for i in self.output_slots]
