"""Greedy against cost-aware placement with a device provider that runs only MatMul and Softmax.

Usage::

    python benchmarks/bench_placement.py [--model bert] [--batch 1] [--seq 128] [--rounds 20]

The provider is the CPU's MatMul and Softmax kernels on a simulated device (``simdev:0``)
whose data transfer really copies each value (as a host-device link would). Two sessions,
``session.placement_policy`` = greedy and = cost, run the same inputs interleaved; the script
prints each one's nodes on the device, copies per run, median latency, and which islands the
cost policy moved back to the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import onnxmux
from onnxmux import ep
from onnxmux.providers.cpu.registry import REGISTRY as CPU_REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402


class SimArray:
    """An array on the simulated device."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class SimTransfer(ep.DataTransfer):
    """Copies on the way in and out, as a transfer to real device memory does."""

    array_type = SimArray

    def to_device(self, value: Any) -> SimArray:
        return SimArray(np.array(value, copy=True))

    def to_host(self, value: SimArray) -> np.ndarray:
        return np.array(value.array, copy=True)

    def describe(self, value: SimArray) -> tuple[np.dtype, tuple[int, ...]]:
        return value.array.dtype, value.array.shape


def _on_device(factory):
    def make(ctx, xp):
        run = factory(ctx, xp)
        return lambda *args: SimArray(np.asarray(run(*[a.array for a in args])))

    return make


def _registry() -> ep.KernelRegistry:
    registry = ep.KernelRegistry()
    for op in ("MatMul", "Softmax"):
        for since in CPU_REGISTRY.versions("", op):
            kernel = CPU_REGISTRY.lookup("", op, since)
            registry.add(ep.KernelDef(op, "", since, _on_device(kernel.factory)))
    return registry


class MatMulSoftmaxProvider(ep.KernelProvider):
    """MatMul and Softmax only, on a simulated device."""

    name = "MatMulSoftmaxExecutionProvider"
    device = "simdev:0"
    data_transfer = SimTransfer()
    registry = _registry()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert", choices=sorted(models.MODELS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    ep.register_provider(MatMulSoftmaxProvider)
    path = models.MODELS[args.model]("dynamo")
    sessions = {}
    for policy in ("greedy", "cost"):
        options = onnxmux.SessionOptions()
        options.add_session_config_entry("session.placement_policy", policy)
        sessions[policy] = onnxmux.InferenceSession(str(path), options, providers=[MatMulSoftmaxProvider.name, "cpu"])
    rng = np.random.default_rng(0)
    feeds = {}
    for arg in sessions["greedy"].get_inputs():
        shape = [args.batch if i == 0 else args.seq for i, _ in enumerate(arg.shape)]
        feeds[arg.name] = rng.integers(0, 100, shape).astype(np.int64) if "int" in arg.type else rng.standard_normal(shape).astype(np.float32)
    times: dict[str, list[float]] = {p: [] for p in sessions}
    results = {p: s.run(None, feeds) for p, s in sessions.items()}  # warm-up
    for _ in range(args.rounds):
        for policy, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[policy].append(time.perf_counter() - start)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(results["greedy"], results["cost"]))
    print(f"{args.model}, batch {args.batch}, sequence {args.seq}, {args.rounds} rounds; largest output difference {diff:g}")
    for policy, session in sessions.items():
        plan = session.get_execution_plan()
        on_device = sum(n["provider"] == MatMulSoftmaxProvider.name for n in plan.nodes)
        print(f"  {policy:6s}: {on_device} nodes on the device, {len(plan.copies)} copies per run, "
              f"median {statistics.median(times[policy]) * 1e3:.2f} ms")
    for move in sessions["cost"].get_execution_plan().moved:
        print(f"  moved {', '.join(move['nodes'])}: {move['copy_bytes']} bytes of copies > {move['work']:.0f} of work")


if __name__ == "__main__":
    main()
