"""Time onnxmux against onnxruntime on converter-made traditional-ML models.

Usage::

    python benchmarks/bench_ml.py [--models forest,lightgbm] [--task multiclass]
        [--batch 256] [--rounds 50] [--warmup 5] [--threads 1] [--json FILE]

The models are ``benchmarks/ml_models.py``'s 100-tree scikit-learn random forest (skl2onnx)
and 100-round LightGBM classifier (onnxmltools), each with its probabilities as a tensor and
as a ZipMap (a list of dicts); ``logreg`` (the scaler + logistic-regression pipeline) can be
named too. The batch is the first ``--batch`` rows of the model's held-out data, repeated when
more are asked for than the 500 there are.

Both runtimes run in the same process on the same batch. After ``--warmup`` untimed runs each,
the script interleaves them (onnxmux, onnxruntime, onnxmux, ...) for ``--rounds`` rounds and
reports each one's median latency and the ratio onnxmux / onnxruntime (above 1: onnxmux is
slower; the target is at most 2). Before timing it checks that onnxmux gives onnxruntime's
labels and probabilities (atol 1e-5) and shows the result; it makes no assertions.

Threads: both runtimes get the same intra-op thread count, ``--threads N`` (default 1), through
``benchmarks/common.py``'s sessions: onnxruntime gets ``intra_op_num_threads = N``,
``inter_op_num_threads = 1``, sequential execution and no spinning; onnxmux gets
``intra_op_num_threads = N``, which also caps NumPy's BLAS pool at N threads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from rich.console import Console
from rich.table import Table

import onnxmux

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import ml_models  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_failed_row,
    add_timings,
    error_text,
    interleaved_times,
    known_names,
    onnxmux_session,
    onnxruntime_session,
    print_results,
    results_table,
    rounds_text,
    runtime_runners,
    versions,
    write_json,
)

ATOL = 1e-5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time onnxmux against onnxruntime on traditional-ML models.")
    parser.add_argument("--models", default="forest,lightgbm", help="comma-separated: forest, lightgbm, logreg")
    parser.add_argument("--task", default="multiclass", choices=("multiclass", "binary"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=50, help="timed runs of each runtime")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs of each runtime first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def batch_rows(x: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` rows of ``x``, cycling through it when it has fewer."""
    return np.ascontiguousarray(x[np.arange(batch) % len(x)])


def same_outputs(actual: list[Any], expected: list[Any], classes: np.ndarray) -> bool:
    """Whether labels are equal and probabilities (tensor or ZipMap dicts) agree within ``ATOL``."""

    def as_array(value: Any) -> np.ndarray:
        if isinstance(value, list):
            return np.array([[row[c] for c in classes.tolist()] for row in value])
        return np.asarray(value)

    return bool(
        np.array_equal(np.asarray(actual[0]).reshape(-1), np.asarray(expected[0]).reshape(-1))
        and np.allclose(as_array(actual[1]), as_array(expected[1]), rtol=0, atol=ATOL)
    )


def bench_model(spec: ml_models.Spec, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model; the result records medians in ms, or why onnxmux could not run it."""
    model = ml_models.load(spec)
    feeds = {ml_models.INPUT_NAME: batch_rows(model.x_test, args.batch)}
    result: dict[str, Any] = {"model": spec.name, "batch": args.batch}
    # quiet: onnxmltools declares the label's shape as [1]
    reference = onnxruntime_session(model.path, args.threads, quiet=True)
    try:
        session = onnxmux_session(model.path, args.threads)
        actual = session.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = error_text(exc)
        return result
    result["matches"] = same_outputs(actual, reference.run(None, feeds), model.estimator.classes_)
    times = interleaved_times(runtime_runners(session, reference, feeds), args.warmup, args.rounds)
    add_timings(result, times, ("onnxmux", "onnxruntime"))
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table (times in ms: medians, then minimums); median ratios above 2 are red."""
    table = results_table(
        f"onnxmux vs onnxruntime (CPU, {args.threads} thread(s), batch {args.batch}, "
        f"{rounds_text(args.warmup, args.rounds)})",
        ("model", "matches ort", "onnxmux ms", "ort ms", "onnxmux min", "ort min", "ratio"),
        no_wrap=True,
    )
    for r in results:
        if "error" in r:
            add_failed_row(table, [r["model"]])
            continue
        colour = "green" if r["ratio"] <= 2 else "red"
        table.add_row(
            r["model"],
            "yes" if r["matches"] else "[red]no[/red]",
            f"{r['onnxmux_median_ms']:.3f}",
            f"{r['onnxruntime_median_ms']:.3f}",
            f"{r['onnxmux_min_ms']:.3f}",
            f"{r['onnxruntime_min_ms']:.3f}",
            f"[{colour}]{r['ratio']:.2f}x[/{colour}]",
        )
    return table


def main(args: argparse.Namespace) -> None:
    """Run the benchmark for each requested model, tensor and ZipMap outputs; print the table."""
    kinds = known_names(args.models, ml_models.KINDS)
    specs = [ml_models.Spec(kind, args.task, zipmap) for kind in kinds for zipmap in (False, True)]
    results = [bench_model(spec, args) for spec in specs]
    print_results(render(results, args), results, console=Console(width=max(Console().width, 110)))
    config_keys = ("models", "task", "batch", "rounds", "warmup", "threads")
    write_json(args, config_keys, versions(onnxmux, onnxruntime, np), results=results)


if __name__ == "__main__":
    main(parse_args())
