"""Time onnxmux's OpenVINO provider against OpenVINO's own Python API on the same model files.

Usage::

    python benchmarks/bench_openvino.py [--models resnet18,bert] [--exporter dynamo]
        [--precisions FP32,BF16] [--rounds 30] [--warmup 5] [--batch 1] [--seq 128]
        [--threads 1] [--level all] [--json FILE]

For each model and precision, two runners get the same inputs:

* ``onnxmux``: ``InferenceSession(path, providers=[("openvino", {...}), "cpu"])``, whose
  OpenVINO provider compiles the partitions it claims (the whole graph for these models);
* ``openvino``: ``Core.compile_model(path, "CPU", config)`` and one infer request, fed the
  same arrays (``share_inputs=True``, outputs copied, as the provider does).

Both use the same OpenVINO properties: ``INFERENCE_PRECISION_HINT`` from the precision
(FP32 -> f32, BF16 -> bf16) and ``INFERENCE_NUM_THREADS = --threads``, so both runners get
the same thread count; the onnxmux session also gets it as its ``intra_op_num_threads``
(through ``benchmarks/common.py``), which caps NumPy's BLAS pool for any node left to the CPU. After warming both up,
the script interleaves them for ``--rounds`` rounds, so that drift in machine load affects both
alike, and reports each runner's median latency and the ratio onnxmux / openvino (above 1:
onnxmux is slower). ``--level`` sets onnxmux's graph optimization level (basic, extended or
all, the default); OpenVINO compiles the file as it is. It also reports how onnxmux partitioned the model and the largest
difference between the two runners' outputs. It makes no assertions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import openvino
from rich.console import Console
from rich.table import Table

import onnxmux
from onnxmux.providers.openvino.options import PRECISIONS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_timings,
    input_shape,
    interleaved_times,
    make_feeds,
    onnxmux_session,
    print_results,
    results_table,
    rounds_text,
    split_list,
    versions,
    write_json,
)

LEVELS = {
    "basic": onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": onnxmux.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time onnxmux's OpenVINO provider against OpenVINO's Python API.")
    parser.add_argument("--models", default="resnet18,bert", help="comma-separated: resnet18, bert")
    parser.add_argument("--exporter", default="dynamo", choices=models.EXPORTERS)
    parser.add_argument("--precisions", default="FP32,BF16", help="comma-separated: FP32, BF16, FP16")
    parser.add_argument("--rounds", type=int, default=30, help="timed runs of each runner")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs of each runner first")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128, help="BERT sequence length")
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO inference threads of both runners")
    parser.add_argument("--level", default="all", choices=tuple(LEVELS), help="onnxmux's graph optimization level")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def openvino_runner(path: Path, config: dict[str, Any], feeds: dict[str, np.ndarray]) -> Any:
    """A function running the model compiled by OpenVINO directly, returning its outputs."""
    core = openvino.Core()
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda: request.infer(feeds, share_inputs=True, share_outputs=False).to_tuple()


def bench_model(name: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model at one precision; medians in ms, the ratio, the partitions."""
    path = models.MODELS[name](args.exporter)
    feeds = make_feeds(name, args.batch, args.seq)
    options = {"precision": precision, "num_of_threads": args.threads}
    providers = [("openvino", options), "cpu"]
    session = onnxmux_session(path, args.threads, providers=providers, level=LEVELS[args.level])
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "INFERENCE_NUM_THREADS": args.threads}
    direct = openvino_runner(path, config, feeds)
    ours = session.run(None, feeds)[0]
    theirs = direct()[0]
    plan = session.get_execution_plan().to_dict()
    times = interleaved_times(
        {"onnxmux": lambda: session.run(None, feeds), "openvino": direct}, args.warmup, args.rounds
    )
    result: dict[str, Any] = {
        "model": name,
        "exporter": args.exporter,
        "precision": precision,
        "level": args.level,
        "input_shape": input_shape(feeds),
        "partitions": [(p["provider"], len(p["nodes"])) for p in plan["partitions"]],
        "max_abs_diff": float(np.max(np.abs(ours.astype(np.float64) - theirs))),
    }
    add_timings(result, times, ("onnxmux", "openvino"), minimums=False)
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    table = results_table(
        f"onnxmux OpenVINO provider vs OpenVINO (CPU, {args.threads} thread(s), optimization level {args.level}, "
        f"{rounds_text(args.warmup, args.rounds)})",
        ("model", "precision", "input", "partitions", "onnxmux ms", "openvino ms", "ratio", "max |diff|"),
        left=4,
    )
    for r in results:
        partitions = ", ".join(f"{provider.removesuffix('ExecutionProvider')}:{count}" for provider, count in r["partitions"])
        table.add_row(
            r["model"],
            r["precision"],
            r["input_shape"],
            partitions,
            f"{r['onnxmux_median_ms']:.2f}",
            f"{r['openvino_median_ms']:.2f}",
            f"{r['ratio']:.3f}x",
            f"{r['max_abs_diff']:.2g}",
        )
    return table


def main(args: argparse.Namespace) -> None:
    """Run the benchmark for each model and precision; print (and optionally save) the table."""
    names = split_list(args.models)
    precisions = [p.upper() for p in split_list(args.precisions)]
    unknown = [n for n in names if n not in models.MODELS] + [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise SystemExit(f"unknown model(s) or precision(s): {', '.join(unknown)}")
    results = [bench_model(name, precision, args) for name in names for precision in precisions]
    print_results(render(results, args), results, console=Console(width=160))
    config_keys = ("exporter", "rounds", "warmup", "batch", "seq", "threads", "level")
    write_json(args, config_keys, versions(onnxmux, openvino), results=results)

if __name__ == "__main__":
    main(parse_args())
