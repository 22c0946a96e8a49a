"""Time onnxmux against onnxruntime on real exported models (ResNet-18, a 4-layer BERT encoder).

Usage::

    python benchmarks/bench_models.py [--models resnet18,bert] [--exporter dynamo]
        [--rounds 20] [--warmup 3] [--batch 1] [--seq 128] [--threads 1] [--json FILE]

Both runtimes run in the same process on the same inputs. After warming each session up,
the script interleaves them (onnxmux, onnxruntime, onnxmux, ...) for ``--rounds`` rounds, so
that drift in machine load affects both alike, and reports each runtime's median latency and
the ratio onnxmux / onnxruntime (above 1: onnxmux is slower). It makes no assertions.

Fairness of threading: ``--threads N`` (default 1) is applied to both runtimes.

* onnxruntime gets ``intra_op_num_threads = N``, ``inter_op_num_threads = 1``, sequential
  execution, and ``session.intra_op.allow_spinning = 0`` so its idle workers do not spin on
  cores while onnxmux's turn runs. Its graph optimizations stay at the default (all), since
  that is how it is deployed.
* onnxmux's CPU kernels are NumPy, whose BLAS/OpenMP pools size themselves from
  ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` when NumPy is first
  imported. The script therefore sets all three to N before importing NumPy (overriding values
  from the environment), and also passes N as onnxmux's ``intra_op_num_threads``.

Use ``--threads`` above 1 only on otherwise idle cores: OpenBLAS hands every GEMM to its
worker threads, and when those are descheduled by other load a small GEMM can take a thousand
times longer, which measures the machine rather than the runtime.

Models are exported on first use by ``benchmarks/models.py`` (needs torch) and cached.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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
from benchmarks import models  # noqa: E402


def make_feeds(model: str, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs; for BERT the last row of the batch is half padding."""
    rng = np.random.default_rng(seed)
    if model == "resnet18":
        return {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}
    lengths = np.linspace(seq, seq // 2, batch).astype(np.int64) if batch > 1 else np.array([seq])
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    input_ids = rng.integers(0, models.BERT_VOCAB, (batch, seq), dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": mask}


def onnxruntime_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session limited to ``threads`` intra-op threads, no spinning."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
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


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one model; the result records medians in ms, or why onnxmux could not run it."""
    path = models.MODELS[name](args.exporter)
    feeds = make_feeds(name, args.batch, args.seq)
    shape = "x".join(str(d) for d in next(iter(feeds.values())).shape)
    result: dict[str, Any] = {"model": name, "exporter": args.exporter, "input_shape": shape}
    reference = onnxruntime_session(path, args.threads)
    try:
        session = onnxmux_session(path, args.threads)
        session.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
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
    """The results as a rich table."""
    table = Table(
        title=f"onnxmux vs onnxruntime (CPU, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up)"
    )
    for column in ("model", "exporter", "input", "onnxmux median ms", "onnxruntime median ms", "ratio"):
        table.add_column(column, justify="left" if column in ("model", "exporter", "input") else "right")
    for r in results:
        cells = [r["model"], r["exporter"], r["input_shape"]]
        if "error" in r:
            table.add_row(*cells, "[red]failed[/red]", "", "")
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
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(models.MODELS)}")
    results = [bench_model(name, args) for name in names]
    console = Console()
    console.print(render(results, args))
    for r in results:
        if "error" in r:
            console.print(f"[red]{r['model']}: onnxmux failed: {r['error']}[/red]", highlight=False)
    if args.json:
        config = {k: getattr(args, k) for k in ("exporter", "rounds", "warmup", "batch", "seq", "threads")}
        versions = {"onnxmux": onnxmux.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
        args.json.write_text(json.dumps({"config": config, "versions": versions, "results": results}, indent=2))


if __name__ == "__main__":
    main(ARGS)
