"""The flat execution plan: kernels specialized once, values addressed by integer slots.

A plan is built at session creation. Running it walks a list of steps, each a kernel with
the slot numbers of its inputs and outputs and the slots to release after it, so the run
path does no name lookups, attribute parsing or graph walks, and peak memory follows the
set of live values rather than the whole graph. Kernels run with numpy's floating-point
warnings off: log(0), 0/0 and overflow give IEEE's inf and nan, as ONNX and onnxruntime do,
without a RuntimeWarning reaching the user.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core import run_control
from onnxmux.core.errors import OnnxMuxError, RuntimeFailure
from onnxmux.core.run_control import RunControl

#: Slot 0 always holds None: a missing optional input reads it.
NONE_SLOT = 0
#: Slot 1 receives the outputs nobody reads (optional outputs left unnamed).
DISCARD_SLOT = 1

Step = tuple  # (run, input slots, output slots, slots to free, description)


@dataclass(frozen=True)
class StepLabel:
    """What a step runs, for profiles: a node, a compiled group of nodes, or a copy between devices."""

    kind: str  # "node", "subgraph" or "copy"
    name: str  # the node's name; a name made up for a subgraph or copy
    op_type: str  # the node's op; the compiled group's or copy's kind (MemcpyFromHost...)
    provider: str
    node_index: int = -1  # the node's position in its graph (-1 for copies)


@dataclass
class Plan:
    """A compiled graph, ready to run on a list of input values."""

    template: list[Any]
    input_slots: tuple[int, ...]
    outer_slots: tuple[int, ...]
    output_slots: tuple[int, ...]
    steps: tuple[Step, ...]
    #: One label per step (empty when the plan was built without them).
    labels: tuple[StepLabel, ...] = ()
    #: The device of each slot placed by the compiler (absent: the host), for rebinding (``placement.py``).
    locations: dict[int, str] = field(default_factory=dict)
    #: Slots written by copy steps, with the slot each copies.
    copied_from: dict[int, int] = field(default_factory=dict)
    #: Run functions writing into an input that dies at their step, by step index (``donation.py``):
    #: the sequential run loop uses them in place of the step's own.
    donated: dict[int, Callable[..., Any]] = field(default_factory=dict)
    #: ``steps`` as the run loop reads them (``runnable``), and the ``steps`` they were made from.
    _program: tuple = field(default=(), init=False, repr=False, compare=False)
    _program_of: Any = field(default=None, init=False, repr=False, compare=False)

    def program(self) -> tuple:
        """The steps as the run loop reads them, made once (again when ``steps`` is replaced)."""
        if self._program_of is not self.steps:
            donated = self.donated
            self._program = tuple(
                runnable((donated[i], *step[1:]) if i in donated else step) for i, step in enumerate(self.steps)
            )
            self._program_of = self.steps
        return self._program

    def initial_slots(self, inputs: Sequence[Any], outer: Sequence[Any]) -> list[Any]:
        """A run's private slot list: the constants, then the inputs and outer values."""
        slots = self.template.copy()
        for slot, value in zip(self.input_slots, inputs):
            slots[slot] = value
        for slot, value in zip(self.outer_slots, outer):
            slots[slot] = value
        return slots

    def execute(
        self, inputs: Sequence[Any], outer: Sequence[Any] = (), control: RunControl | None = None
    ) -> list[Any]:
        """Run every step; ``inputs`` follow the graph inputs, ``outer`` the outer-scope values.

        ``control`` is checked before each step; a subgraph's plan uses its run's control.
        """
        program = self.program()
        slots = self.initial_slots(inputs, outer)
        description = ""
        owner = control is not None
        previous = run_control.activate(control) if owner else None
        control = control or run_control.active()
        try:
            with np.errstate(all="ignore"):
                for run, fetch, outs, first, frees, description in program:
                    if control is not None:
                        control.check()
                    result = run(*fetch(slots))
                    if type(result) is tuple:
                        for slot, value in zip(outs, result):
                            slots[slot] = value
                    else:
                        slots[first] = result
                    if frees:
                        for slot in frees:
                            slots[slot] = None
        except OnnxMuxError:
            raise
        except Exception as exc:  # a kernel failed: name the node it ran
            raise RuntimeFailure(f"{description} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if owner:
                run_control.activate(previous)
        return [slots[i] for i in self.output_slots]

    __call__ = execute


def runnable(step: Step) -> tuple:
    """A step as (run, fetch, outs, first output, frees, description): ``fetch(slots)`` reads its
    inputs in one call (a tuple or a list), so the run loop does no per-input Python work."""
    run, ins, outs, frees, description = step
    if len(ins) > 1:
        fetch = itemgetter(*ins)
    else:  # one input or none: a slice gives a list (itemgetter of one index gives the bare value)
        fetch = itemgetter(slice(ins[0], ins[0] + 1) if ins else slice(0, 0))
    return run, fetch, outs, outs[0] if outs else DISCARD_SLOT, tuple(frees), description


def store(slots: list[Any], outs: tuple[int, ...], result: Any) -> None:
    """Write a kernel's result to its output slots: a tuple holds one value per output."""
    if type(result) is tuple:
        for slot, value in zip(outs, result):
            slots[slot] = value
    else:
        slots[outs[0]] = result


SubgraphRunner = Callable[[Sequence[Any], Sequence[Any]], list]


class SlotTable:
    """Assigns an integer slot to each IR value of one graph."""

    def __init__(self) -> None:
        self.slots: dict[ir.Value, int] = {}
        self.count = 2  # NONE_SLOT and DISCARD_SLOT

    def add(self, value: ir.Value) -> int:
        """The slot of ``value``, allocating one on first sight."""
        slot = self.slots.get(value)
        if slot is None:
            slot = self.slots[value] = self.count
            self.count += 1
        return slot


def liveness(steps: list[list], keep: set[int]) -> None:
    """Fill each step's free list: a slot is released after the last step that reads it.

    ``steps`` hold ``[run, ins, outs, frees, description]``; slots in ``keep`` (graph
    outputs, constants, outer values) are never released. Outputs never read are released
    right after the step that makes them.
    """
    last_use: dict[int, int] = {}
    for index, step in enumerate(steps):
        for slot in step[2]:
            last_use[slot] = index
        for slot in step[1]:
            last_use[slot] = index
    for slot, index in last_use.items():
        if slot not in keep and slot > DISCARD_SLOT:
            steps[index][3].append(slot)


class ParallelPlan(Plan):
    """A Plan whose independent steps run concurrently on a thread pool (ORT_PARALLEL).

    A step starts once the steps producing its inputs are done; a slot is released when its
    last reader finishes. Results are identical to sequential execution.
    """

    def __init__(self, plan: Plan, threads: int) -> None:
        super().__init__(
            plan.template,
            plan.input_slots,
            plan.outer_slots,
            plan.output_slots,
            plan.steps,
            plan.labels,
            plan.locations,
            plan.copied_from,
        )
        self.threads = threads
        producer = {slot: i for i, step in enumerate(self.steps) for slot in step[2]}
        self.deps = [{producer[s] for s in step[1] if s in producer} for step in self.steps]
        self.roots = [i for i, deps in enumerate(self.deps) if not deps]
        self.users: list[list[int]] = [[] for _ in self.steps]
        for index, deps in enumerate(self.deps):
            for dep in deps:
                self.users[dep].append(index)
        keep = set(self.output_slots)
        self.readers: dict[int, int] = {}
        for step in self.steps:
            for slot in set(step[1]):
                if slot > DISCARD_SLOT and slot not in keep:
                    self.readers[slot] = self.readers.get(slot, 0) + 1
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="onnxmux")

    def execute(
        self, inputs: Sequence[Any], outer: Sequence[Any] = (), control: RunControl | None = None
    ) -> list[Any]:
        slots = self.initial_slots(inputs, outer)
        control = control or run_control.active()
        waiting = [len(d) for d in self.deps]
        readers = dict(self.readers)
        lock = threading.Lock()
        finished = threading.Event()
        state = {"left": len(self.steps), "error": None}

        def run_step(index: int) -> None:
            if state["error"] is not None:
                return
            run, ins, outs, _, description = self.steps[index]
            try:
                run_control.activate(control)
                if control is not None:
                    control.check()
                with np.errstate(all="ignore"):
                    store(slots, outs, run(*[slots[i] for i in ins]))
            except Exception as exc:
                with lock:
                    if state["error"] is None:
                        state["error"] = exc if isinstance(exc, OnnxMuxError) else RuntimeFailure(
                            f"{description} failed: {type(exc).__name__}: {exc}"
                        )
                        state["error"].__cause__ = exc
                finished.set()
                return
            ready = []
            with lock:
                for slot in set(ins):
                    if slot in readers:
                        readers[slot] -= 1
                        if readers[slot] == 0:
                            slots[slot] = None
                for user in self.users[index]:
                    waiting[user] -= 1
                    if waiting[user] == 0:
                        ready.append(user)
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()
            for user in ready:
                self.pool.submit(run_step, user)

        if not self.steps:
            return [slots[i] for i in self.output_slots]
        for index in self.roots:  # fixed before any step runs: workers edit ``waiting`` meanwhile
            self.pool.submit(run_step, index)
        finished.wait()
        if state["error"] is not None:
            raise state["error"]
        return [slots[i] for i in self.output_slots]

    __call__ = execute
