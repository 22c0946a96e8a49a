"""The CUDA provider's GPU check, run by ``ci/gpu_check.sh OUT_DIR`` on a machine with a GPU.

Steps, each within a share of a 5.5-minute budget (a step out of time is reported as not run):

1. the environment: GPU, versions, the CUDA provider's availability; the models exported once;
2. ``pytest tests/test_cuda.py`` (the GPU tests run here; they skip elsewhere);
3. ONNX's node tests on ``["cpu"]`` and ``["cuda", "cpu"]``: pass counts, the cases the CPU
   passes but CUDA does not, and how many cases ran at least one node / every node on CUDA;
4. ``benchmarks/bench_cuda.py``'s cases: onnxmux ``[cuda, cpu]`` with and without
   ``enable_cuda_graph`` against PyTorch eager on the same GPU, interleaved, medians.

Prints one table and writes it to ``OUT_DIR/table.txt``, the numbers to ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 330
START = time.monotonic()


def left() -> float:
    """Seconds left of the budget."""
    return BUDGET_S - (time.monotonic() - START)


def step(title: str) -> None:
    print(f"\n== {title} ({time.monotonic() - START:.0f} s in, {left():.0f} s left)", flush=True)


def environment() -> dict[str, Any]:
    """GPU, versions and the provider's availability."""
    import numpy

    import onnxmux
    from onnxmux.providers.cuda import CUDAExecutionProvider

    info: dict[str, Any] = {"python": platform.python_version(), "numpy": numpy.__version__}
    for name in ("cupy", "torch", "onnx", "onnxruntime"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:
            info[name] = f"missing ({type(exc).__name__})"
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        info["gpu"] = f"nvidia-smi failed: {exc}"
    info["cuda_reason"] = CUDAExecutionProvider.unavailable_reason()
    info["providers"] = onnxmux.get_available_providers()
    return info


def export_models() -> None:
    """Export the three models once, so the tests and timings only load them."""
    from benchmarks import bench_cuda

    for name in ("resnet18", "bert", "gpt2"):
        started = time.monotonic()
        print(f"{name}: {bench_cuda.model_path(name)} ({time.monotonic() - started:.0f} s)", flush=True)


def run_tests(timeout: float) -> dict[str, Any]:
    """``pytest tests/test_cuda.py``: the summary line's counts."""
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or b""
        print((output.decode(errors="replace") if isinstance(output, bytes) else output)[-4000:])
        return {"summary": f"timed out after {timeout:.0f} s"}
    print(done.stdout[-8000:], done.stderr[-2000:])
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1])} if lines else {}
    return {"summary": lines[-1].strip("= ") if lines else f"no summary (exit {done.returncode})", **counts}


def node_suite(deadline: float) -> dict[str, Any]:
    """Node tests on the CPU alone and on [cuda, cpu], until ``deadline`` (monotonic seconds)."""
    from onnxmux.conformance import node_cases, run_case

    cases = node_cases()
    cpu_pass = cuda_pass = some_cuda = all_cuda = ran = 0
    regressions: list[str] = []
    for case in cases:
        if time.monotonic() > deadline:
            break
        ran += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpu = run_case(case, ["cpu"])
            cuda = run_case(case, ["cuda", "cpu"])
        cpu_pass += cpu.passed
        cuda_pass += cuda.passed
        if cpu.passed and not cuda.passed:
            regressions.append(f"{case.name}: {cuda.reason[:200]}")
        some_cuda += "CUDAExecutionProvider" in cuda.placement
        all_cuda += set(cuda.placement) == {"CUDAExecutionProvider"}
    for line in regressions:
        print("CPU passes, [cuda, cpu] fails:", line)
    return {
        "cases": len(cases), "ran": ran, "cpu_pass": cpu_pass, "cuda_pass": cuda_pass,
        "regressions": len(regressions), "some_on_cuda": some_cuda, "all_on_cuda": all_cuda,
    }


def models(deadline: float) -> list[dict[str, Any]]:
    """bench_cuda's cases, each started only while time is left."""
    from benchmarks import bench_cuda, common

    results = []
    for case in bench_cuda.CASES:
        if time.monotonic() > deadline:
            results.append({"case": case.label, "error": "not run (out of time)"})
            continue
        try:
            results.append(bench_cuda.bench_case(case, warmup=3, rounds=15))
        except Exception as exc:
            results.append({"case": case.label, "error": common.error_text(exc)})
        print(json.dumps(results[-1]), flush=True)
    return results


def table(info: dict[str, Any], tests: dict[str, Any], suite: dict[str, Any], benches: list[dict[str, Any]]) -> str:
    """The one table, as text."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=escape(f"CUDA provider GPU check: {info.get('gpu') or 'no GPU'}"))
    for column in ("check", "result", "onnxmux ms", "+cuda graph ms", "torch ms", "ratio", "graph ratio", "notes"):
        out.add_column(column, justify="left" if column in ("check", "result", "notes") else "right")
    out.add_row("CUDA tests", escape(tests.get("summary", "not run")), "", "", "", "", "", "")
    if suite:
        out.add_row(
            escape("node suite [cuda, cpu]"),
            f"{suite['cuda_pass']}/{suite['ran']} pass (CPU alone {suite['cpu_pass']}); {suite['regressions']} CPU-only passes",
            "", "", "", "", "",
            f"≥1 node on CUDA: {suite['some_on_cuda']}; all on CUDA: {suite['all_on_cuda']}; of {suite['cases']} cases",
        )
    else:
        out.add_row(escape("node suite [cuda, cpu]"), "not run", "", "", "", "", "", "")
    for r in benches:
        if "error" in r:
            out.add_row(r["case"], escape(f"failed: {r['error'][:120]}"), "", "", "", "", "", "")
            continue
        notes = (f"CPU nodes {r['cpu_nodes']}/{r['nodes']}; copies {r['copies']} = transfers/run "
                 f"{r['transfers_per_run']}; max diff {r['max_diff']:.1e}; graph {r['graph'][:80]}")
        out.add_row(
            r["case"], "ok", f"{r['onnxmux_median_ms']:.2f}", f"{r['onnxmux_graph_median_ms']:.2f}",
            f"{r['torch_median_ms']:.2f}", f"{r['ratio']:.2f}", f"{r['graph_ratio']:.2f}", escape(notes),
        )
    console = Console(record=True, width=240)
    console.print(out)
    return console.export_text()


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    step("environment")
    info = environment()
    print(json.dumps(info, indent=2))
    tests: dict[str, Any] = {}
    suite: dict[str, Any] = {}
    benches: list[dict[str, Any]] = []
    if info["cuda_reason"] is not None:
        print(f"CUDA is not usable here: {info['cuda_reason']}")
        tests = {"summary": f"not run: {info['cuda_reason']}"}
    else:
        step("export the models (cached in ONNXMUX_MODEL_CACHE or .cache/models)")
        export_models()
        step("pytest tests/test_cuda.py")
        tests = run_tests(timeout=max(30, min(120, left() - 170)))
        step("node suite [cuda, cpu]")
        suite = node_suite(deadline=time.monotonic() + max(0, left() - 100))
        step("models against PyTorch eager")
        benches = models(deadline=time.monotonic() + max(0, left() - 15))
    text = table(info, tests, suite, benches)
    (out / "table.txt").write_text(text)
    (out / "results.json").write_text(json.dumps({"environment": info, "tests": tests, "node_suite": suite, "models": benches}, indent=2))
    step("done")
    failed = info["cuda_reason"] is not None or tests.get("failed", 0) or suite.get("regressions", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
