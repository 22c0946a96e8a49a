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

Threads: onnxruntime gets ``intra_op_num_threads = N``, ``inter_op_num_threads = 1``,
sequential execution and no spinning; onnxmux gets ``intra_op_num_threads = N``, and NumPy's
BLAS/OpenMP pools are sized N through ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, set before NumPy is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread count was set", file=sys.stderr)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import onnxmux  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import ml_models  # noqa: E402

ATOL = 1e-5


def onnxruntime_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session limited to ``threads`` intra-op threads, no spinning, quiet."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # onnxmltools declares the label's shape as [1]
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxmux_session(path: Path, threads: int) -> onnxmux.InferenceSession:
    """An onnxmux CPU session (NumPy's thread pools were sized from the environment)."""
    options = onnxmux.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxmux.InferenceSession(str(path), options, providers=["cpu"])


def interleaved_times(
    runners: dict[str, Callable[[], Any]], warmup: int, rounds: int
) -> dict[str, list[float]]:
    """Per runner, ``rounds`` wall times in seconds, taken in turn after ``warmup`` untimed runs."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


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
    reference = onnxruntime_session(model.path, args.threads)
    try:
        session = onnxmux_session(model.path, args.threads)
        actual = session.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    result["matches"] = same_outputs(actual, reference.run(None, feeds), model.estimator.classes_)
    times = interleaved_times(
        {
            "onnxmux": lambda: session.run(None, feeds),
            "onnxruntime": lambda: reference.run(None, feeds),
        },
        args.warmup,
        args.rounds,
    )
    for runtime, samples in times.items():
        result[f"{runtime}_median_ms"] = statistics.median(samples) * 1e3
        result[f"{runtime}_min_ms"] = min(samples) * 1e3
    result["ratio"] = result["onnxmux_median_ms"] / result["onnxruntime_median_ms"]
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table (times in ms: medians, then minimums); median ratios above 2 are red."""
    table = Table(
        title=f"onnxmux vs onnxruntime (CPU, {args.threads} thread(s), batch {args.batch}, "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up)"
    )
    table.add_column("model", no_wrap=True)
    for column in ("matches ort", "onnxmux ms", "ort ms", "onnxmux min", "ort min", "ratio"):
        table.add_column(column, justify="right")
    for r in results:
        if "error" in r:
            table.add_row(r["model"], "[red]failed[/red]", "", "", "", "", "")
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
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ml_models.KINDS]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(ml_models.KINDS)}")
    specs = [ml_models.Spec(kind, args.task, zipmap) for kind in kinds for zipmap in (False, True)]
    results = [bench_model(spec, args) for spec in specs]
    console = Console(width=max(Console().width, 110))
    console.print(render(results, args))
    for r in results:
        if "error" in r:
            console.print(f"[red]{r['model']}: onnxmux failed: {r['error']}[/red]", highlight=False)
    if args.json:
        config = {k: getattr(args, k) for k in ("models", "task", "batch", "rounds", "warmup", "threads")}
        versions = {"onnxmux": onnxmux.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
        args.json.write_text(json.dumps({"config": config, "versions": versions, "results": results}, indent=2))


if __name__ == "__main__":
    main(ARGS)
