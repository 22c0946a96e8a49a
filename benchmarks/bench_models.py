"""Time onnxmux against onnxruntime on real exported models (ResNet-18, a 4-layer BERT encoder).

Usage::

    python benchmarks/bench_models.py [--models resnet18,bert] [--exporter dynamo]
        [--rounds 20] [--warmup 3] [--batch 1] [--seq 128] [--threads 1] [--json FILE]

Both runtimes run in the same process on the same inputs. After warming each session up,
the script interleaves them (onnxmux, onnxruntime, onnxmux, ...) for ``--rounds`` rounds, so
that drift in machine load affects both alike, and reports each runtime's median latency and
the ratio onnxmux / onnxruntime (above 1: onnxmux is slower). It makes no assertions.

Threads: both runtimes get the same intra-op thread count, ``--threads N`` (default 1), through
``benchmarks/common.py``'s sessions.

* onnxruntime gets ``intra_op_num_threads = N``, ``inter_op_num_threads = 1``, sequential
  execution, and ``session.intra_op.allow_spinning = 0`` so its idle workers do not spin on
  cores while onnxmux's turn runs. Its graph optimizations stay at the default (all), since
  that is how it is deployed.
* onnxmux gets ``intra_op_num_threads = N``, which also sets the BLAS pool of NumPy (that its
  CPU kernels run on) to N threads while the session runs.

Use ``--threads`` above 1 only on otherwise idle cores: OpenBLAS hands every GEMM to its
worker threads, and when those are descheduled by other load a small GEMM can take a thousand
times longer, which measures the machine rather than the runtime.

Models are exported on first use by ``benchmarks/models.py`` (needs torch) and cached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from rich.table import Table

import onnxmux

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
    onnxruntime_session,
    print_results,
    results_table,
    rounds_text,
    runtime_runners,
    versions,
    write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time onnxmux against onnxruntime on real exported models.")
    parser.add_argument("--models", default="resnet18,bert", help="comma-separated: resnet18, bert")
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    parser.add_argument("--rounds", type=int, default=20, help="timed runs of each runtime")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each runtime first")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128, help="BERT sequence length")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model; the result records medians in ms, or why onnxmux could not run it."""
    path = models.MODELS[name](args.exporter)
    feeds = make_feeds(name, args.batch, args.seq)
    result: dict[str, Any] = {"model": name, "exporter": args.exporter, "input_shape": input_shape(feeds)}
    reference = onnxruntime_session(path, args.threads)
    try:
        session = onnxmux_session(path, args.threads)
        session.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = error_text(exc)
        return result
    times = interleaved_times(runtime_runners(session, reference, feeds), args.warmup, args.rounds)
    add_timings(result, times, ("onnxmux", "onnxruntime"))
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    table = results_table(
        f"onnxmux vs onnxruntime (CPU, {args.threads} thread(s), {rounds_text(args.warmup, args.rounds)})",
        ("model", "exporter", "input", "onnxmux median ms", "onnxruntime median ms", "ratio"),
        left=3,
    )
    for r in results:
        cells = [r["model"], r["exporter"], r["input_shape"]]
        if "error" in r:
            add_failed_row(table, cells)
        else:
            table.add_row(
                *cells,
                f"{r['onnxmux_median_ms']:.2f}",
                f"{r['onnxruntime_median_ms']:.2f}",
                f"{r['ratio']:.2f}x",
            )
    return table


def main(args: argparse.Namespace) -> None:
    """Run the benchmark for each requested model and print (and optionally save) the table."""
    results = [bench_model(name, args) for name in known_names(args.models, models.MODELS)]
    print_results(render(results, args), results)
    config_keys = ("exporter", "rounds", "warmup", "batch", "seq", "threads")
    write_json(args, config_keys, versions(onnxmux, onnxruntime, np), results=results)


if __name__ == "__main__":
    main(parse_args())
