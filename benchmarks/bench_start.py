"""Start-up cost of onnxmux and onnxruntime in fresh processes: import time, memory after the
import, first session's creation time and memory after it.

Usage::

    python benchmarks/bench_start.py [--model bert] [--exporter dynamo] [--rounds 5] [--json FILE]

Each round starts one process per runtime (alternating, so drift in machine load affects both
alike): it imports the runtime, creates one CPU session of the model, and reports the seconds
and the peak resident memory (Linux's VmHWM) after each step. The table shows medians. Python
writes no bytecode cache when ``PYTHONDONTWRITEBYTECODE`` is set, which makes every import
compile its sources; unset it for figures a user would see. No assertions are made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402
from benchmarks.common import results_table, write_json  # noqa: E402

#: Run in a fresh process: ``RUNTIME MODEL`` -> one JSON line of timings and memory.
#: Peak memory is the process's VmHWM (ru_maxrss would carry the parent's peak over the exec).
PROBE = """
import json, sys, time
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
runtime, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
module = __import__(runtime)
imported = time.perf_counter()
import_mb = peak_mb()
module.InferenceSession(path, providers=["CPUExecutionProvider"])
created = time.perf_counter()
print(json.dumps({"import_ms": (imported - start) * 1e3, "import_mb": import_mb,
                  "session_ms": (created - imported) * 1e3, "session_mb": peak_mb()}))
"""
RUNTIMES = ("onnxruntime", "onnxmux")
COLUMNS = ("import_ms", "import_mb", "session_ms", "session_mb")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert", choices=sorted(models.MODELS))
    parser.add_argument("--exporter", default="dynamo", choices=models.EXPORTERS)
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per runtime")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def probe(runtime: str, path: Path) -> dict[str, float]:
    """One fresh process's figures."""
    done = subprocess.run([sys.executable, "-c", PROBE, runtime, str(path)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Measure, print the medians and their ratios, optionally write JSON."""
    args = parse_args(argv)
    path = models.MODELS[args.model](args.exporter)
    samples: dict[str, list[dict[str, float]]] = {r: [] for r in RUNTIMES}
    for _ in range(args.rounds):
        for runtime in RUNTIMES:
            samples[runtime].append(probe(runtime, path))
    medians = {r: {c: statistics.median(s[c] for s in samples[r]) for c in COLUMNS} for r in RUNTIMES}
    table = results_table(
        f"start-up, {path.stem} ({args.rounds} fresh processes each)",
        ["runtime", "import ms", "MB after import", "first session ms", "MB after session"],
    )
    for runtime in RUNTIMES:
        table.add_row(runtime, *(f"{medians[runtime][c]:.1f}" for c in COLUMNS))
    table.add_row("onnxmux / onnxruntime", *(f"{medians['onnxmux'][c] / medians['onnxruntime'][c]:.2f}x" for c in COLUMNS))
    Console().print(table)
    write_json(args, ["model", "exporter", "rounds"], medians=medians, samples=samples)


if __name__ == "__main__":
    main()
