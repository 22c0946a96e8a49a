"""What the benchmark scripts share: session set-up, interleaved timing, feeds and reporting.

Threads: the sessions made here give onnxmux and onnxruntime the same ``intra_op_num_threads``.
onnxmux sets NumPy's BLAS pool to that count (through threadpoolctl) while a session runs, so
nothing has to be set in the environment before NumPy loads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnxruntime
from rich.console import Console
from rich.table import Table

import onnxmux
from benchmarks import models


def onnxruntime_session(path: Path, threads: int, *, quiet: bool = False) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session with ``threads`` intra-op threads (0: its default), no spinning.

    It runs sequentially with one inter-op thread, and ``session.intra_op.allow_spinning = 0``
    keeps its idle workers from spinning on cores while another runner's turn runs. Its graph
    optimizations stay at the default (all), since that is how it is deployed. ``quiet`` hides
    its warnings (log severity 3).
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if quiet:
        options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxmux_session(
    path: Path | str,
    threads: int,
    *,
    providers: Sequence[Any] = ("cpu",),
    level: onnxmux.GraphOptimizationLevel | None = None,
) -> onnxmux.InferenceSession:
    """An onnxmux session on ``providers`` with ``threads`` intra-op threads (0: its default, the physical cores).

    ``level`` is the graph optimization level (None: the default, all).
    """
    options = onnxmux.SessionOptions()
    options.intra_op_num_threads = threads
    if level is not None:
        options.graph_optimization_level = level
    return onnxmux.InferenceSession(str(path), options, providers=list(providers))


def interleaved_times(runners: dict[str, Callable[[], Any]], warmup: int, rounds: int) -> dict[str, list[float]]:
    """Per runner, ``rounds`` wall times in seconds, taken in turn after ``warmup`` untimed runs.

    Taking the runners in turn within each round lets drift in machine load affect all alike.
    """
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


def runtime_runners(
    session: onnxmux.InferenceSession, reference: onnxruntime.InferenceSession, feeds: dict[str, Any]
) -> dict[str, Callable[[], Any]]:
    """``interleaved_times`` runners: the onnxmux ``session`` and the onnxruntime ``reference`` on ``feeds``."""
    return {"onnxmux": lambda: session.run(None, feeds), "onnxruntime": lambda: reference.run(None, feeds)}


def add_timings(
    result: dict[str, Any], times: dict[str, list[float]], ratio: tuple[str, str], *, minimums: bool = True
) -> None:
    """Record in ``result`` each runner's median (and minimum) in ms and the ratio of two medians.

    The keys are ``<runner>_median_ms``, ``<runner>_min_ms`` and ``ratio``: the median of
    ``ratio[0]`` over that of ``ratio[1]``.
    """
    for runner, samples in times.items():
        result[f"{runner}_median_ms"] = statistics.median(samples) * 1e3
        if minimums:
            result[f"{runner}_min_ms"] = min(samples) * 1e3
    result["ratio"] = result[f"{ratio[0]}_median_ms"] / result[f"{ratio[1]}_median_ms"]


def error_text(exc: BaseException) -> str:
    """How a result records a failure: the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


def make_feeds(model: str, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs of a ``benchmarks/models.py`` model; for BERT the last row of the batch is half padding."""
    rng = np.random.default_rng(seed)
    if model == "resnet18":
        return {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}
    lengths = np.linspace(seq, seq // 2, batch).astype(np.int64) if batch > 1 else np.array([seq])
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    input_ids = rng.integers(0, models.BERT_VOCAB, (batch, seq), dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": mask}


def input_shape(feeds: dict[str, np.ndarray]) -> str:
    """The first feed's shape written ``1x3x224x224``."""
    return "x".join(str(d) for d in next(iter(feeds.values())).shape)


def split_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


def known_names(text: str, known: Iterable[str]) -> list[str]:
    """The names of a comma-separated ``--models`` option; exits naming any that are not ``known``."""
    known = list(known)
    names = split_list(text)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def rounds_text(warmup: int, rounds: int) -> str:
    """The table titles' account of the timing: rounds after warm-up."""
    return f"{rounds} interleaved rounds after {warmup} warm-up"


def results_table(title: str, columns: Sequence[str], left: int = 1, *, no_wrap: bool = False) -> Table:
    """A rich table of ``columns``: the first ``left`` (labels) left-aligned, the rest (numbers) right-aligned.

    ``no_wrap`` keeps the label columns on one line.
    """
    table = Table(title=title)
    for i, column in enumerate(columns):
        if i < left:
            table.add_column(column, justify="left", no_wrap=no_wrap)
        else:
            table.add_column(column, justify="right")
    return table


def add_failed_row(table: Table, labels: Sequence[str]) -> None:
    """A row of ``labels``, then "failed" in red, then empty cells to the table's width."""
    table.add_row(*labels, "[red]failed[/red]", *[""] * (len(table.columns) - len(labels) - 1))


def print_results(
    table: Table, results: Sequence[dict[str, Any]], *, console: Console | None = None, failed: str = "onnxmux failed"
) -> None:
    """Print the table, then a red line ``<model>: <failed>: <error>`` per result that records an error."""
    console = console or Console()
    console.print(table)
    for r in results:
        if "error" in r:
            console.print(f"[red]{r['model']}: {failed}: {r['error']}[/red]", highlight=False)


def versions(*modules: ModuleType) -> dict[str, str]:
    """The version of each module, by module name."""
    return {module.__name__: module.__version__ for module in modules}


def write_json(
    args: argparse.Namespace,
    config_keys: Sequence[str],
    module_versions: dict[str, str] | None = None,
    **data: Any,
) -> None:
    """Unless ``args.json`` is None, write the options named in ``config_keys`` (as ``config``),
    ``versions`` (when given) and ``data`` to that file as JSON."""
    if args.json is None:
        return
    payload: dict[str, Any] = {"config": {key: getattr(args, key) for key in config_keys}}
    if module_versions is not None:
        payload["versions"] = module_versions
    payload.update(data)
    args.json.write_text(json.dumps(payload, indent=2))
