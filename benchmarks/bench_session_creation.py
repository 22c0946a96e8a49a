"""Session creation time of onnxmux at each optimization level vs onnxruntime at its default level.

Usage::

    python benchmarks/bench_session_creation.py [--model bert] [--exporter dynamo]
        [--rounds 10] [--warmup 1] [--threads 0] [--json FILE]

Each round creates one session of every configuration in turn (onnxruntime at its default,
ORT_ENABLE_ALL; onnxmux at levels 0, 1, 2 and 99), so drift in machine load affects all alike,
and the table reports the median per configuration. For onnxmux it also reports, measured in
the same rounds, how long ``onnxmux.core.optimizer.optimize`` (plus the CPU provider's level-99
fusions) takes on a freshly loaded model, and the node count it leaves. No assertions are made.

Threads: both runtimes get the same intra-op thread count, ``--threads N``, through
``benchmarks/common.py``'s sessions (onnxmux's also caps NumPy's BLAS pool at N when created).
The default, 0, leaves each runtime at its own default: onnxruntime sizes its pool from the
cores, and onnxmux leaves BLAS alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import onnxruntime
from rich.console import Console
from rich.table import Table

import onnxmux
from onnxmux.core.loader import load
from onnxmux.core.optimizer import optimize
from onnxmux.providers.cpu.fusion import fuse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402
from benchmarks.common import (  # noqa: E402
    onnxmux_session,
    onnxruntime_session,
    results_table,
    rounds_text,
    versions,
    write_json,
)

LEVELS = {
    0: onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL,
    1: onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    2: onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    99: onnxmux.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert", choices=sorted(models.MODELS))
    parser.add_argument("--exporter", default="dynamo", choices=models.EXPORTERS)
    parser.add_argument("--rounds", type=int, default=10, help="timed creations of each configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of both runtimes (0: defaults)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def optimizer_only(path: Path, level: int, nodes: dict[int, int]) -> Callable[[], float]:
    """A runner returning the seconds ``optimize`` (and at 99 ``fuse``) take on a fresh load."""

    def run() -> float:
        model = load(path).model
        start = time.perf_counter()
        optimize(model, level)
        if level >= 99:
            fuse(model.graph, list(model.graph))
        elapsed = time.perf_counter() - start
        nodes[level] = len(model.graph)
        return elapsed

    return run


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved session creations and optimizer runs; medians in ms and node counts."""
    path = models.MODELS[args.model](args.exporter)
    nodes: dict[int, int] = {}
    sessions: dict[str, Callable[[], Any]] = {
        "onnxruntime (default: all)": lambda: onnxruntime_session(path, args.threads)
    }
    for level, option in LEVELS.items():
        sessions[f"onnxmux level {level}"] = lambda option=option: onnxmux_session(path, args.threads, level=option)
    optimizers = {level: optimizer_only(path, level, nodes) for level in LEVELS if level}
    session_times: dict[str, list[float]] = {name: [] for name in sessions}
    optimizer_times: dict[int, list[float]] = {level: [] for level in optimizers}
    for round_ in range(args.warmup + args.rounds):
        timed = round_ >= args.warmup
        for name, create in sessions.items():
            start = time.perf_counter()
            create()
            if timed:
                session_times[name].append(time.perf_counter() - start)
        for level, run in optimizers.items():
            elapsed = run()
            if timed:
                optimizer_times[level].append(elapsed)
    nodes[0] = len(load(path).model.graph)
    return {
        "model": f"{args.model}-{args.exporter}",
        "session_median_ms": {name: statistics.median(t) * 1e3 for name, t in session_times.items()},
        "optimize_median_ms": {level: statistics.median(t) * 1e3 for level, t in optimizer_times.items()},
        "nodes": nodes,
    }


def render(result: dict[str, Any], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    table = results_table(
        f"session creation, {result['model']} ({rounds_text(args.warmup, args.rounds)})",
        ("configuration", "session median ms", "optimize() median ms", "nodes after"),
    )
    for name, ms in result["session_median_ms"].items():
        level = int(name.rsplit(" ", 1)[1]) if name.startswith("onnxmux") else None
        optimizer = result["optimize_median_ms"].get(level)
        table.add_row(
            name,
            f"{ms:.1f}",
            "" if optimizer is None else f"{optimizer:.1f}",
            "" if level is None else str(result["nodes"][level]),
        )
    return table


def main(args: argparse.Namespace) -> None:
    """Run the benchmark and print (and optionally save) the table."""
    result = bench(args)
    Console().print(render(result, args))
    config_keys = ("model", "exporter", "rounds", "warmup", "threads")
    write_json(args, config_keys, versions(onnxmux, onnxruntime), result=result)


if __name__ == "__main__":
    main(parse_args())
