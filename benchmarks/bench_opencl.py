"""Time onnxmux's OpenCL provider against its CPU provider on the real exported models.

Usage::

    python benchmarks/bench_opencl.py [--models resnet18,bert] [--exporter dynamo]
        [--rounds 20] [--warmup 3] [--batch 1] [--seq 128] [--threads 1]
        [--platform P] [--device D] [--json FILE]

Two onnxmux sessions run in the same process on the same inputs: providers
``["opencl", "cpu"]`` and ``["cpu"]``. After warming both up, the script interleaves them
for ``--rounds`` rounds (so drift in machine load affects both alike) and reports each one's
median latency, the ratio OpenCL / CPU (above 1: OpenCL is slower), how many nodes ran on
OpenCL, the copies per run, and the largest difference between the two outputs.

Threads: ``--threads N`` (default 1) limits both sides to N cores: both sessions get the same
intra-op thread count, ``intra_op_num_threads = N`` (through ``benchmarks/common.py``), which
caps NumPy's BLAS pool at N threads; and PoCL's CPU device, which reads
``POCL_MAX_PTHREAD_COUNT`` (PoCL < 4) or ``POCL_CPU_MAX_CU_COUNT`` when its platform loads, gets
both set to N before the script first asks for an OpenCL platform. A GPU is not limited by them.

Models are exported on first use by ``benchmarks/models.py`` (needs torch) and cached.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

import onnxmux
from onnxmux.providers.opencl import OpenCLExecutionProvider

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_failed_row,
    add_timings,
    error_text,
    input_shape,
    interleaved_times,
    known_names,
    make_feeds,
    onnxmux_session,
    print_results,
    results_table,
    rounds_text,
    write_json,
)

OPENCL = "OpenCLExecutionProvider"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time the OpenCL provider against the CPU provider.")
    parser.add_argument("--models", default="resnet18,bert", help="comma-separated: resnet18, bert")
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    parser.add_argument("--rounds", type=int, default=20, help="timed runs of each session")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each session first")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128, help="BERT sequence length")
    parser.add_argument("--threads", type=int, default=1, help="cores for NumPy's BLAS and for PoCL")
    parser.add_argument("--platform", help="OpenCL platform (index or name substring)")
    parser.add_argument("--device", help="OpenCL device (index or name substring)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def limit_pocl_threads(threads: int) -> None:
    """Let PoCL's CPU device use ``threads`` cores; takes effect only before its platform loads."""
    for var in ("POCL_MAX_PTHREAD_COUNT", "POCL_CPU_MAX_CU_COUNT"):
        os.environ[var] = str(threads)


def opencl_options(args: argparse.Namespace) -> dict[str, str]:
    """The provider options the command line names."""
    return {k: getattr(args, k) for k in ("platform", "device") if getattr(args, k) is not None}


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model; the result records medians in ms and where the nodes ran."""
    path = models.MODELS[name](args.exporter)
    feeds = make_feeds(name, args.batch, args.seq)
    result: dict[str, Any] = {"model": name, "exporter": args.exporter, "input_shape": input_shape(feeds)}
    try:
        opencl = onnxmux_session(path, args.threads, providers=[("opencl", opencl_options(args)), "cpu"])
        cpu = onnxmux_session(path, args.threads)
        (got,) = opencl.run(None, feeds)
        (expected,) = cpu.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = error_text(exc)
        return result
    plan = opencl.get_execution_plan().to_dict()
    result["device"] = OpenCLExecutionProvider(opencl_options(args)).xp.description
    result["opencl_nodes"] = sum(n["provider"] == OPENCL for n in plan["nodes"])
    result["nodes"] = len(plan["nodes"])
    result["copies"] = len(plan["copies"])
    result["max_abs_diff"] = float(np.max(np.abs(got - expected)))
    times = interleaved_times(
        {"opencl": lambda: opencl.run(None, feeds), "cpu": lambda: cpu.run(None, feeds)}, args.warmup, args.rounds
    )
    add_timings(result, times, ("opencl", "cpu"))
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    device = next((r["device"] for r in results if "device" in r), "?")
    table = results_table(
        f"onnxmux OpenCL ({device}) vs CPU provider, {args.threads} thread(s), {rounds_text(args.warmup, args.rounds)}",
        (
            "model", "exporter", "input", "opencl median ms", "cpu median ms", "ratio",
            "nodes on OpenCL", "copies/run", "max |diff|",
        ),
        left=3,
    )
    for r in results:
        cells = [r["model"], r["exporter"], r["input_shape"]]
        if "error" in r:
            add_failed_row(table, cells)
            continue
        table.add_row(
            *cells,
            f"{r['opencl_median_ms']:.2f}",
            f"{r['cpu_median_ms']:.2f}",
            f"{r['ratio']:.2f}x",
            f"{r['opencl_nodes']}/{r['nodes']}",
            str(r["copies"]),
            f"{r['max_abs_diff']:.2g}",
        )
    return table


def main(args: argparse.Namespace) -> None:
    """Run the benchmark for each requested model and print (and optionally save) the table."""
    limit_pocl_threads(args.threads)
    reason = OpenCLExecutionProvider.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the OpenCL provider is not available: {reason}")
    results = [bench_model(name, args) for name in known_names(args.models, models.MODELS)]
    print_results(render(results, args), results, failed="failed")
    config_keys = ("exporter", "rounds", "warmup", "batch", "seq", "threads", "platform", "device")
    write_json(args, config_keys, results=results)


if __name__ == "__main__":
    main(parse_args())
