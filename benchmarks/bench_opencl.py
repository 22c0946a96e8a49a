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

Threads: ``--threads N`` (default 1) limits both sides to N cores. NumPy's BLAS pools read
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` when NumPy is first
imported, and PoCL's CPU device reads ``POCL_MAX_PTHREAD_COUNT`` (PoCL < 4) or
``POCL_CPU_MAX_CU_COUNT`` when its platform loads, so the script sets all of them before
importing either. A GPU is not limited by them.

Models are exported on first use by ``benchmarks/models.py`` (needs torch) and cached.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread count was set", file=sys.stderr)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "POCL_MAX_PTHREAD_COUNT", "POCL_CPU_MAX_CU_COUNT"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import onnxmux  # noqa: E402
from onnxmux.providers.opencl import OpenCLExecutionProvider  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402
from benchmarks.bench_models import interleaved_times, make_feeds  # noqa: E402

OPENCL = "OpenCLExecutionProvider"


def opencl_options(args: argparse.Namespace) -> dict[str, str]:
    """The provider options the command line names."""
    return {k: getattr(args, k) for k in ("platform", "device") if getattr(args, k) is not None}


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model; the result records medians in ms and where the nodes ran."""
    path = str(models.MODELS[name](args.exporter))
    feeds = make_feeds(name, args.batch, args.seq)
    shape = "x".join(str(d) for d in next(iter(feeds.values())).shape)
    result: dict[str, Any] = {"model": name, "exporter": args.exporter, "input_shape": shape}
    options = onnxmux.SessionOptions()
    options.intra_op_num_threads = args.threads
    try:
        opencl = onnxmux.InferenceSession(path, options, providers=[("opencl", opencl_options(args)), "cpu"])
        cpu = onnxmux.InferenceSession(path, options, providers=["cpu"])
        (got,) = opencl.run(None, feeds)
        (expected,) = cpu.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
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
    for runner, samples in times.items():
        result[f"{runner}_median_ms"] = statistics.median(samples) * 1e3
        result[f"{runner}_min_ms"] = min(samples) * 1e3
    result["ratio"] = result["opencl_median_ms"] / result["cpu_median_ms"]
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    device = next((r["device"] for r in results if "device" in r), "?")
    table = Table(
        title=f"onnxmux OpenCL ({device}) vs CPU provider, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    columns = ("model", "exporter", "input", "opencl median ms", "cpu median ms", "ratio", "nodes on OpenCL", "copies/run", "max |diff|")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "exporter", "input") else "right")
    for r in results:
        cells = [r["model"], r["exporter"], r["input_shape"]]
        if "error" in r:
            table.add_row(*cells, "[red]failed[/red]", "", "", "", "", "")
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
    reason = OpenCLExecutionProvider.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the OpenCL provider is not available: {reason}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(models.MODELS)}")
    results = [bench_model(name, args) for name in names]
    console = Console()
    console.print(render(results, args))
    for r in results:
        if "error" in r:
            console.print(f"[red]{r['model']}: failed: {r['error']}[/red]", highlight=False)
    if args.json:
        config = {k: getattr(args, k) for k in ("exporter", "rounds", "warmup", "batch", "seq", "threads", "platform", "device")}
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=2))


if __name__ == "__main__":
    main(ARGS)
