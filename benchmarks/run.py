"""The benchmark suite: onnxmux's CPU provider against onnxruntime on the models people run.

Usage::

    python benchmarks/run.py [--models mobilenet_v3_small,bert,...] [--exporters dynamo,legacy]
        [--rounds 10] [--warmup 2] [--threads 1,0] [--creation-rounds 3] [--no-memory]
        [--json FILE] [--markdown docs/performance.md]

For every model of ``benchmarks/suite.py`` (the neural networks by each exporter, the
traditional-ML models at batch 256, a 1,000-node Add chain) it measures, per runtime:

* run time at each ``--threads`` setting (1: one intra-op thread each; 0: each runtime's
  default), both sessions in this process, warmed up, then timed in interleaved rounds
  (onnxmux, onnxruntime, onnxmux, ...), reported as medians and their ratio;
* session creation (median of ``--creation-rounds`` interleaved creations after an untimed
  one, one thread; the previous session is freed and garbage collected before each);
* peak resident memory, imports included, of a fresh process per runtime and model
  (``benchmarks/peak_memory.py``);
* the largest absolute difference between the two runtimes' outputs.

It prints a table with ratios (onnxmux / onnxruntime: above 1, onnxmux is slower) and their
geometric means, optionally writes the results as JSON (to compare commits) and the table as
the suite section of a Markdown file, with the machine. It makes no assertions.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import onnxmux

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    add_timings,
    error_text,
    interleaved_times,
    known_names,
    onnxmux_session,
    onnxruntime_session,
    results_table,
    runtime_runners,
    split_list,
    versions,
    write_json,
)
from benchmarks.suite import CHAIN_NODES, ENTRIES, Entry  # noqa: E402

PEAK_MEMORY_SCRIPT = Path(__file__).resolve().parent / "peak_memory.py"
MARK_BEGIN = "<!-- benchmarks/run.py: begin -->"
MARK_END = "<!-- benchmarks/run.py: end -->"
THREAD_LABELS = {1: "1 thread", 0: "default threads"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="onnxmux against onnxruntime on the benchmark suite.")
    parser.add_argument("--models", default=",".join(ENTRIES), help=f"comma-separated, of: {', '.join(ENTRIES)}")
    parser.add_argument("--exporters", default="dynamo,legacy", help="exporters of the neural networks")
    parser.add_argument("--rounds", type=int, default=10, help="timed runs of each runtime per thread setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of each runtime first")
    parser.add_argument("--threads", default="1,0", help="intra-op thread settings (0: each runtime's default)")
    parser.add_argument("--creation-rounds", type=int, default=3, help="session creations timed per runtime")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--markdown", type=Path, help="write the table into this Markdown file's suite section")
    args = parser.parse_args(argv)
    args.model_names = known_names(args.models, ENTRIES)
    args.thread_settings = [int(t) for t in split_list(args.threads)]
    args.exporter_names = split_list(args.exporters)
    return args


def cases(args: argparse.Namespace) -> list[tuple[Entry, str]]:
    """(entry, exporter) pairs to run, in suite order."""
    return [
        (ENTRIES[name], exporter)
        for name in args.model_names
        for exporter in ENTRIES[name].exporters
        if exporter == "-" or exporter in args.exporter_names
    ]


def largest_difference(actual: Sequence[Any], expected: Sequence[Any]) -> float:
    """The largest absolute difference over all outputs (numbers; other types must be equal)."""
    worst = 0.0
    for a, e in zip(actual, expected):
        a, e = np.asarray(a), np.asarray(e)
        if a.dtype.kind in "fiub" and e.dtype.kind in "fiub" and a.shape == e.shape:
            if a.size:
                worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))))
        elif not np.array_equal(a, e):
            return math.inf
    return worst


def creation_times(path: Path, rounds: int) -> tuple[dict[str, Any], Any, Any]:
    """Medians of interleaved one-thread session creations after an untimed one each (which pays
    for first-use imports), and the last session of each runtime. The previous session is freed
    and garbage collected before each timed creation, so that neither runtime's timing holds the
    teardown of a session (its own or the other's)."""
    samples: dict[str, list[float]] = {"onnxmux": [], "onnxruntime": []}
    session, reference = onnxmux_session(path, 1), onnxruntime_session(path, 1, quiet=True)
    for _ in range(rounds):
        session = None
        gc.collect()
        start = time.perf_counter()
        session = onnxmux_session(path, 1)
        samples["onnxmux"].append(time.perf_counter() - start)
        reference = None
        gc.collect()
        start = time.perf_counter()
        reference = onnxruntime_session(path, 1, quiet=True)
        samples["onnxruntime"].append(time.perf_counter() - start)
    medians = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in samples.items()}
    medians["ratio"] = medians["onnxmux_ms"] / medians["onnxruntime_ms"]
    return medians, session, reference


def peak_memory(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Peak RSS in MB of a fresh process per runtime (imports, session, one run), and the ratio."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        stored = Path(folder) / "feeds.npz"
        np.savez(stored, **feeds)
        for runtime in ("onnxmux", "onnxruntime"):
            done = subprocess.run(
                [sys.executable, str(PEAK_MEMORY_SCRIPT), runtime, str(path), str(stored), "1"],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            result[f"{runtime}_mb"] = measured["peak_rss_mb"]
            result[f"{runtime}_imports_mb"] = measured["imports_rss_mb"]
    result["ratio"] = result["onnxmux_mb"] / result["onnxruntime_mb"]
    return result


def bench(entry: Entry, exporter: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one model by one exporter; ``error`` says what could not run."""
    result: dict[str, Any] = {"model": entry.name, "kind": entry.kind, "exporter": exporter}
    try:
        path = entry.path(exporter)
    except Exception as exc:  # an exporter that cannot handle the model: recorded, not fatal
        result["error"] = f"export failed: {error_text(exc)}"
        return result
    feeds = entry.feeds()
    try:
        result["creation"], session, reference = creation_times(path, max(1, args.creation_rounds))
        result["max_abs_diff"] = largest_difference(session.run(None, feeds), reference.run(None, feeds))
        result["timings"] = {}
        one_thread = session, reference
        for threads in args.thread_settings:
            if threads == 1:  # the creation's sessions, whatever setting ran before
                session, reference = one_thread
            else:
                session, reference = onnxmux_session(path, threads), onnxruntime_session(path, threads, quiet=True)
            times = interleaved_times(runtime_runners(session, reference, feeds), args.warmup, args.rounds)
            timing: dict[str, Any] = {}
            add_timings(timing, times, ("onnxmux", "onnxruntime"))
            result["timings"][str(threads)] = timing
        if not args.no_memory:
            result["memory"] = peak_memory(path, feeds)
    except Exception as exc:  # either runtime failing is recorded; the suite goes on
        result["error"] = error_text(exc)
    return result


def geometric_mean(values: Sequence[float]) -> float | None:
    """The geometric mean, or None for no values."""
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summarize(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Geometric means of the neural networks' ratios per thread setting, and the Add chain's per-node times."""
    summary: dict[str, Any] = {}
    networks = [r for r in results if r["kind"] == "nn" and "error" not in r]
    for threads in args.thread_settings:
        ratios = [r["timings"][str(threads)]["ratio"] for r in networks]
        summary[f"geomean_ratio_{threads}"] = geometric_mean(ratios)
    summary["geomean_creation_ratio"] = geometric_mean([r["creation"]["ratio"] for r in networks])
    memory = [r["memory"]["ratio"] for r in networks if "memory" in r]
    summary["geomean_memory_ratio"] = geometric_mean(memory)
    for r in results:
        if r["kind"] == "chain" and "error" not in r and "1" in r["timings"]:
            timing = r["timings"]["1"]
            summary["add_chain_us_per_node"] = {
                runtime: timing[f"{runtime}_median_ms"] * 1e3 / CHAIN_NODES for runtime in ("onnxmux", "onnxruntime")
            }
    return summary


def _cells(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The table cells of one result after its model and exporter."""
    width = len(columns(args)) - 2
    if "error" in r:
        return [f"failed: {r['error'][:80]}"] + [""] * (width - 1)
    cells = []
    for threads in args.thread_settings:
        t = r["timings"][str(threads)]
        cells += [f"{t['onnxmux_median_ms']:.2f} / {t['onnxruntime_median_ms']:.2f}", f"{t['ratio']:.2f}x"]
    c = r["creation"]
    cells += [f"{c['onnxmux_ms']:.0f} / {c['onnxruntime_ms']:.0f}", f"{c['ratio']:.2f}x"]
    if not args.no_memory:
        m = r["memory"]
        cells += [f"{m['onnxmux_mb']:.0f} / {m['onnxruntime_mb']:.0f}", f"{m['ratio']:.2f}x"]
    return cells + [f"{r['max_abs_diff']:.1e}"]


def columns(args: argparse.Namespace) -> list[str]:
    """Column headings: model, exporter, then onnxmux / onnxruntime figures and their ratio per measure."""
    names = ["model", "exporter"]
    for threads in args.thread_settings:
        label = THREAD_LABELS.get(threads, f"{threads} threads")
        names += [f"ms, {label}", "ratio"]
    names += ["creation ms", "ratio"]
    if not args.no_memory:
        names += ["peak MB", "ratio"]
    return names + ["max abs diff"]


def summary_lines(summary: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The summary in words: geometric means and the Add chain's per-node overhead."""
    lines = []
    for threads in args.thread_settings:
        mean = summary.get(f"geomean_ratio_{threads}")
        if mean is not None:
            lines.append(f"Geometric mean of the networks' ratios, {THREAD_LABELS.get(threads, threads)}: {mean:.2f}x")
    for key, label in (("geomean_creation_ratio", "session creation"), ("geomean_memory_ratio", "peak memory")):
        if summary.get(key) is not None:
            lines.append(f"Geometric mean of the networks' {label} ratios: {summary[key]:.2f}x")
    chain = summary.get("add_chain_us_per_node")
    if chain:
        lines.append(
            f"Add chain, per node (one thread): onnxmux {chain['onnxmux']:.2f} µs, onnxruntime {chain['onnxruntime']:.2f} µs"
        )
    return lines


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a rich table."""
    table = results_table(
        f"onnxmux vs onnxruntime, CPU ({args.rounds} interleaved rounds after {args.warmup} warm-up)",
        columns(args),
        left=2,
    )
    for r in results:
        table.add_row(r["model"], r["exporter"], *_cells(r, args))
    return table


def machine() -> dict[str, Any]:
    """The machine and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from onnxmux.core.threads import physical_cores

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def markdown(results: list[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace, info: dict) -> str:
    """The suite section of docs/performance.md: machine, command, table and summary."""
    module_versions = versions(onnxmux, onnxruntime, np)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    lines = [
        MARK_BEGIN,
        "## The benchmark suite: CPU provider against onnxruntime",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['physical_cores']} physical cores), "
        f"{info['system']}, Python {info['python']}; "
        + ", ".join(f"{name} {version}" for name, version in module_versions.items())
        + f". Load average at the end: {', '.join(f'{x:.1f}' for x in info['load_average'] or ())}.",
        "",
        "Figures are onnxmux / onnxruntime; ratios divide the two (above 1: onnxmux is slower or",
        "bigger). Times are medians of interleaved runs; creation is one-thread session creation;",
        "peak memory is a fresh process's peak RSS with imports, session and one run (one thread).",
        "",
        "| " + " | ".join(columns(args)) + " |",
        "| " + " | ".join(["---"] * len(columns(args))) + " |",
    ]
    for r in results:
        lines.append("| " + " | ".join([r["model"], r["exporter"], *_cells(r, args)]) + " |")
    lines += ["", *(f"- {line}" for line in summary_lines(summary, args)), MARK_END]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str) -> None:
    """Put ``section`` between the suite markers of ``path`` (appended when it has none)."""
    text = path.read_text() if path.exists() else "# Performance\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        before, rest = text.split(MARK_BEGIN, 1)
        text = before + section.rstrip("\n") + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(args: argparse.Namespace) -> None:
    """Run the suite, print the table and summary, and write JSON/Markdown when asked."""
    console = Console(width=max(Console().width, 160))
    todo = cases(args)
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=len(todo))
        for entry, exporter in todo:
            progress.update(task, description=f"{entry.name} ({exporter})")
            results.append(bench(entry, exporter, args))
            progress.advance(task)
    summary = summarize(results, args)
    console.print(render(results, args))
    for line in summary_lines(summary, args):
        console.print(line, highlight=False)
    info = machine()
    config = ("models", "exporters", "rounds", "warmup", "threads", "creation_rounds", "no_memory")
    write_json(args, config, versions(onnxmux, onnxruntime, np), machine=info, results=results, summary=summary)
    if args.markdown is not None:
        write_markdown(args.markdown, markdown(results, summary, args, info))


if __name__ == "__main__":
    main(parse_args())
