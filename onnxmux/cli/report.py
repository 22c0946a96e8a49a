"""``onnxmux report``: for a hardware matrix, which providers work here, their operator
coverage on ONNX's node tests, and their speed on the demo CNN against the CPU provider."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from typing import Callable

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onnxmux.cli.common import add_provider_option_argument, positive_int, provider_options, warn, wide_console
from onnxmux.cli.demo import build_cnn
from onnxmux.cli.machine import machine_info, sdk_versions
from onnxmux.conformance import select_cases
from onnxmux.core import discovery
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.session import InferenceSession
from onnxmux.testing.suite import SuiteReport, run_node_suite

CPU = "CPUExecutionProvider"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("report", help="providers that work here, their node-test coverage and speed")
    p.add_argument("-k", dest="pattern", metavar="REGEX", help="only node tests whose name matches this regular expression")
    p.add_argument("--rounds", type=positive_int, default=20, help="timed runs of the demo CNN per provider (default 20)")
    p.add_argument("--machine", metavar="LABEL", help="this machine's name in the report, e.g. the CI matrix label (default: host name)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (what `onnxmux matrix` merges)")
    add_provider_option_argument(p)


def main(args: argparse.Namespace) -> int:
    """Print one row per provider; unavailable ones say why. Exits 1 if an available provider
    fails a node test the CPU provider passes, or if ``-k`` selects no node test."""
    total = _count_cases(args.pattern)
    if total == 0:
        warn("report", f"-k '{args.pattern}' matches none of the {len(select_cases(None))} node tests")
        return 1
    options = provider_options(args.provider_option)
    found = discovery.discover()
    rows = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True)
    ) as progress:
        cpu = run_node_suite(CPU, args.pattern, progress=_tracker(progress, CPU), provider_options=options)
        for name in discovery.get_all_providers():
            entry = found.get(name)
            if entry is None:
                rows.append({"provider": name, "available": False, "reason": discovery.not_installed_reason(name), "sdk": {}})
                continue
            reason = entry.unavailable_reason()
            row = {"provider": name, "available": reason is None, "reason": reason, "sdk": sdk_versions(entry)}
            if reason is None:
                suite = cpu if name == CPU else run_node_suite(
                    name, args.pattern, progress=_tracker(progress, name), provider_options=options
                )
                row.update(_coverage(suite, cpu))
                row.update(_speed([(p, options.get(p, {})) for p in dict.fromkeys([name, CPU])], args.rounds))
            rows.append(row)
    report = {**machine_info(args.machine), "node_tests": total, "pattern": args.pattern, "providers": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 1 if any(row.get("regressions") for row in rows) else 0


def _count_cases(pattern: str | None) -> int:
    """How many node tests ``pattern`` selects; an invalid regular expression is an InvalidArgument."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidArgument(f"-k '{pattern}' is not a valid regular expression: {exc}") from exc
    return len(select_cases(pattern))


def _tracker(progress: Progress, name: str) -> Callable[[int, int], None]:
    task = progress.add_task(f"node tests on {name}", total=None)
    return lambda done, total: progress.update(task, completed=done, total=total)


def _coverage(suite: SuiteReport, cpu: SuiteReport) -> dict:
    cpu_passed = {r.name for r in cpu.results if r.passed}
    here = [r for r in suite.results if suite.provider in r.placement]
    op_types = set().union(*(r.placement[suite.provider] for r in here))
    all_ops = set().union(*(set().union(*r.placement.values()) for r in suite.results if r.placement))
    return {
        "passed": suite.passed,
        "regressions": sorted(r.name for r in suite.results if r.name in cpu_passed and not r.passed),
        "cases_with_nodes_here": suite.cases_with_nodes_here,
        "cases_entirely_here": suite.cases_entirely_here,
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
    for _ in range(rounds):
        for provider, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"image": images})
            times[provider].append(time.perf_counter() - start)
    median = {p: statistics.median(t) * 1e3 for p, t in times.items()}
    name = specs[0][0]
    return {"demo_ms": median[name], "cpu_demo_ms": median[CPU], "demo_vs_cpu": median[name] / median[CPU]}


def speed_text(row: dict) -> str:
    """``1.40x slower`` or ``2.00x faster`` than the CPU provider."""
    ratio = row["demo_vs_cpu"]
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def _print(report: dict) -> None:
    """The table of available providers, then one line per unavailable one with its reason, uncut."""
    rows = report["providers"]
    table = Table(title=f"onnxmux providers on {report['machine']} ({report['node_tests']} node tests)")
    table.add_column("provider", no_wrap=True, min_width=max(len(r["provider"]) for r in rows))
    for column in ("status", "passed", "cases here (any/all)", "op types here", "demo ms (CPU ms)", "vs CPU"):
        table.add_column(column)
    for row in rows:
        if not row["available"]:
            table.add_row(row["provider"], "[red]unavailable[/]", "", "", "", "", "")
            continue
        status = "[green]works[/]" if not row["regressions"] else f"[red]{len(row['regressions'])} regressions[/]"
        table.add_row(
            row["provider"],
            status,
            str(row["passed"]),
            f"{row['cases_with_nodes_here']}/{row['cases_entirely_here']}",
            f"{row['op_types_here']} of {row['op_types_in_suite']}",
            f"{row['demo_ms']:.2f} ({row['cpu_demo_ms']:.2f})",
            "reference" if row["provider"] == CPU else speed_text(row),
        )
    out = wide_console()
    out.print(table)
    for row in rows:
        if not row["available"]:
            out.print(f"{row['provider']} is unavailable: {escape(row['reason'] or '')}", soft_wrap=True)
