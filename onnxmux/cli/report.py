"""``onnxmux report``: for a hardware matrix, which providers work here, their operator
coverage on ONNX's node tests, and their speed on the demo CNN against the CPU provider."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from onnxmux.cli.common import add_provider_option_argument, provider_options
from onnxmux.cli.demo import build_cnn
from onnxmux.conformance import run_suite
from onnxmux.core import discovery
from onnxmux.core.session import InferenceSession

CPU = "CPUExecutionProvider"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("report", help="providers that work here, their node-test coverage and speed")
    p.add_argument("-k", dest="pattern", help="only node tests whose name matches this regular expression")
    p.add_argument("--rounds", type=int, default=20, help="timed runs of the demo CNN per provider")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_provider_option_argument(p)


def main(args: argparse.Namespace) -> int:
    """Print one row per provider found; unavailable ones say why. Exits 1 if an available
    provider fails a node test the CPU provider passes."""
    options = provider_options(args.provider_option)
    cpu_results = {r.name: r for r in run_suite(args.pattern, [(CPU, options.get(CPU, {}))])}
    rows = []
    for entry in discovery.discover().values():
        reason = entry.unavailable_reason()
        row = {"provider": entry.name, "available": reason is None, "reason": reason}
        if reason is None:
            specs = [(p, options.get(p, {})) for p in dict.fromkeys([entry.name, CPU])]
            row.update(_coverage(entry.name, specs, cpu_results, args.pattern))
            row.update(_speed(specs, args.rounds))
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        Console().print(_table(rows, len(cpu_results)))
    return 1 if any(row.get("regressions") for row in rows) else 0


def _coverage(name: str, specs: list, cpu_results: dict, pattern: str | None) -> dict:
    results = cpu_results if name == CPU else {r.name: r for r in run_suite(pattern, specs)}
    ran = [r for r in results.values() if name in r.placement]
    op_types = set().union(*(r.placement[name] for r in ran)) if ran else set()
    all_ops = set().union(*(set().union(*r.placement.values()) for r in results.values() if r.placement))
    return {
        "passed": sum(r.passed for r in results.values()),
        "regressions": sorted(n for n, r in results.items() if cpu_results[n].passed and not r.passed),
        "cases_with_nodes_here": len(ran),
        "op_types_here": len(op_types),
        "op_types_in_suite": len(all_ops),
    }


def _speed(specs: list, rounds: int) -> dict:
    model = build_cnn().SerializeToString()
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    sessions = {spec[0]: InferenceSession(model, providers=[spec, *specs[1:]]) for spec in specs}
    times: dict[str, list[float]] = {p: [] for p in sessions}
    for session in sessions.values():
        session.run(None, {"image": images})
    for _ in range(max(1, rounds)):
        for provider, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"image": images})
            times[provider].append(time.perf_counter() - start)
    median = {p: statistics.median(t) * 1e3 for p, t in times.items()}
    name = specs[0][0]
    return {"demo_ms": median[name], "demo_vs_cpu": median[name] / median[CPU]}


def _table(rows: list[dict], total: int) -> Table:
    table = Table(title=f"onnxmux providers on this machine ({total} node tests)")
    for column in ("provider", "status", "node tests passed", "cases run here", "op types here", "demo CNN ms", "vs CPU"):
        table.add_column(column)
    for row in rows:
        if not row["available"]:
            table.add_row(row["provider"], f"[red]unavailable[/]: {row['reason']}", "", "", "", "", "")
            continue
        status = "[green]works[/]" if not row["regressions"] else f"[red]{len(row['regressions'])} regressions[/]"
        table.add_row(
            row["provider"],
            status,
            str(row["passed"]),
            str(row["cases_with_nodes_here"]),
            f"{row['op_types_here']} of {row['op_types_in_suite']}",
            f"{row['demo_ms']:.2f}",
            f"{row['demo_vs_cpu']:.2f}x",
        )
    return table
