"""Plan variants for inputs that already live on a device and outputs wanted on one (IOBinding).

The compiled plan takes its inputs on the host and returns its outputs on the host, copying
them to and from the devices of the nodes that use them. A variant for given input and output
devices drops those copies: an input fed on the device of the copy that reads it goes straight
into the copy's slot, and an output wanted on the device that produced it is taken before its
copy to the host. A copy is added only where the caller's placement needs one (an input bound
to a device the plan does not read it on, an output wanted on another device).
"""

from __future__ import annotations

from typing import Any, Mapping

from onnxmux.core.compiler import copy_label, mover
from onnxmux.core.executor import ParallelPlan, Plan, liveness
from onnxmux.core.provider import HOST


def place(
    plan: Plan,
    input_devices: Mapping[int, str],
    output_devices: Mapping[int, str],
    transfers: Mapping[str, Any],
    owners: Mapping[str, str],
) -> Plan:
    """The variant of ``plan`` taking input ``i`` on ``input_devices[i]`` and giving output ``j`` on
    ``output_devices[j]`` (positions absent from the maps stay on the host). ``transfers`` and
    ``owners`` give each device's data transfer and provider name."""
    builder = _Variant(plan, transfers, owners)
    for position, device in input_devices.items():
        builder.bind_input(position, device)
    for position, device in output_devices.items():
        builder.bind_output(position, device)
    return builder.build()


class _Variant:
    def __init__(self, plan: Plan, transfers: Mapping[str, Any], owners: Mapping[str, str]) -> None:
        self.plan = plan
        self.transfers = transfers
        self.owners = owners
        labels = plan.labels or [None] * len(plan.steps)
        #: [run, ins, outs, frees, description, label]
        self.steps = [list(step[:3]) + [[], step[4], label] for step, label in zip(plan.steps, labels)]
        self.locations = dict(plan.locations)
        self.input_slots = list(plan.input_slots)
        self.output_slots = list(plan.output_slots)
        self.count = len(plan.template)
        self.removed: set[int] = set()
        self.prelude: list[list] = []
        self.epilogue: list[list] = []
        #: (source slot, device) -> index of the copy step moving it there.
        self.copy_steps = {
            (step[1][0], self.locations.get(step[2][0], HOST)): i
            for i, step in enumerate(self.steps)
            if step[2] and step[2][0] in plan.copied_from
        }

    def _new_slot(self, device: str) -> int:
        slot = self.count
        self.count += 1
        self.locations[slot] = device
        return slot

    def _read_elsewhere(self, slot: int) -> bool:
        """Whether a kept step or an output reads ``slot``."""
        return slot in self.output_slots or any(
            slot in step[1] for i, step in enumerate(self.steps) if i not in self.removed
        )

    def _copy(self, source: int, target: int, name: str) -> list:
        here, there = self.locations.get(source, HOST), self.locations.get(target, HOST)
        label = copy_label(name.replace(" ", "_"), here, there, self.owners) if self.plan.labels else None
        return [mover(self.transfers, here, there), (source,), (target,), [], f"copy of bound {name} from {here} to {there}", label]

    def bind_input(self, position: int, device: str) -> None:
        slot = self.plan.input_slots[position]
        if self.locations.get(slot, HOST) == device:
            return
        index = self.copy_steps.get((slot, device))
        if index is not None:
            self.removed.add(index)
            bound = self.steps[index][2][0]
        else:
            bound = self._new_slot(device)
        self.input_slots[position] = bound
        if self._read_elsewhere(slot):
            self.prelude.append(self._copy(bound, slot, f"input {position}"))

    def bind_output(self, position: int, device: str) -> None:
        slot = self.output_slots[position]
        if self.locations.get(slot, HOST) == device:
            return
        source = self.plan.copied_from.get(slot)
        if source is not None and self.locations.get(source, HOST) == device:
            self.output_slots[position] = source
            producer = next(i for i, step in enumerate(self.steps) if slot in step[2])
            self.removed.add(producer)
            if self._read_elsewhere(slot):
                self.removed.discard(producer)
            return
        target = self._new_slot(device)
        self.epilogue.append(self._copy(slot, target, f"output {position}"))
        self.output_slots[position] = target

    def build(self) -> Plan:
        steps = self.prelude + [s for i, s in enumerate(self.steps) if i not in self.removed] + self.epilogue
        liveness(steps, keep=set(self.output_slots))
        template = self.plan.template + [None] * (self.count - len(self.plan.template))
        variant = Plan(
            template,
            tuple(self.input_slots),
            self.plan.outer_slots,
            tuple(self.output_slots),
            tuple((s[0], s[1], s[2], tuple(s[3]), s[4]) for s in steps),
            tuple(s[5] for s in steps) if self.plan.labels else (),
            self.locations,
            dict(self.plan.copied_from),
        )
        threads = getattr(self.plan, "threads", None)  # a parallel plan, possibly inside a profiled one
        return ParallelPlan(variant, threads) if threads else variant


def copy_count(plan: Plan) -> int:
    """How many copy steps a plan runs (those the compiler placed and those a variant added)."""
    return sum(1 for step in plan.steps if step[4].startswith("copy of "))
