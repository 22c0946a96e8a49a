"""A summary of a profile in onnxruntime's format: the slowest nodes and op types, time per
provider, time in copies. Reads onnxmux's profiles and onnxruntime's own alike."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

#: The op names of copies between devices (onnxruntime's memcpy nodes and onnxmux's copy events).
COPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost", "Memcpy"})


@dataclass
class Row:
    """Total time and call count of one node, op type or provider."""

    name: str
    total_us: int = 0
    calls: int = 0
    detail: str = ""


@dataclass
class ProfileSummary:
    """Where the time of the profiled runs went."""

    runs: int
    run_us: int
    kernel_us: int
    nodes: list[Row]
    op_types: list[Row]
    providers: list[Row]
    copies: Row
    copy_bytes: int
    session: dict[str, int] = field(default_factory=dict)


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of a profile file (onnxruntime's JSON array, or a ``{"traceEvents": [...]}`` object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["traceEvents"] if isinstance(data, dict) else data


def summarize(events: Iterable[dict[str, Any]]) -> ProfileSummary:
    """Aggregate ``Node`` events by node, op type and provider, and ``Session`` events by name."""
    nodes: dict[str, Row] = {}
    ops: dict[str, Row] = {}
    providers: dict[str, Row] = {}
    copies = Row("copies")
    copy_bytes = 0
    session: dict[str, int] = defaultdict(int)
    runs = run_us = kernel_us = 0
    for event in events:
        duration = int(event.get("dur", 0))
        if event.get("cat") == "Session":
            if event.get("name") == "model_run":
                runs += 1
                run_us += duration
            else:
                session[event.get("name", "")] += duration
            continue
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "op_name" not in args:
            continue
        op = args["op_name"]
        provider = args.get("provider", "")
        name = event.get("name", "").removesuffix("_kernel_time")
        kernel_us += duration
        for table, key, detail in ((nodes, name, f"{op} on {provider}"), (ops, op, ""), (providers, provider, "")):
            row = table.setdefault(key, Row(key, detail=detail))
            row.total_us += duration
            row.calls += 1
        if op in COPY_OPS:
            copies.total_us += duration
            copies.calls += 1
            copy_bytes += int(args.get("bytes", args.get("output_size", 0)))
    return ProfileSummary(
        runs,
        run_us,
        kernel_us,
        _by_time(nodes),
        _by_time(ops),
        _by_time(providers),
        copies,
        copy_bytes,
        dict(session),
    )


def _by_time(rows: dict[str, Row]) -> list[Row]:
    return sorted(rows.values(), key=lambda r: r.total_us, reverse=True)


def print_summary(summary: ProfileSummary, console: Console, top: int = 10) -> None:
    """Print the slowest ``top`` nodes and op types, the share of each provider and the copies."""
    total = summary.kernel_us or 1
    console.print(_table(f"top {top} nodes by time", "node", summary.nodes[:top], total, detail="runs as"))
    console.print(_table(f"top {top} op types by time", "op type", summary.op_types[:top], total))
    console.print(_table("time per provider", "provider", summary.providers, total))
    copies = summary.copies
    console.print(
        f"copies between devices: {copies.calls} taking {copies.total_us} µs "
        f"({100 * copies.total_us / total:.1f}% of kernel time), {summary.copy_bytes} bytes"
    )
    if summary.runs:
        console.print(
            f"{summary.runs} profiled runs: {summary.run_us / summary.runs:.1f} µs per run, "
            f"{summary.kernel_us / summary.runs:.1f} µs of it in kernels and copies"
        )
    for name, duration in summary.session.items():
        console.print(f"{name}: {duration} µs")


def _table(title: str, first: str, rows: list[Row], total: int, detail: str = "") -> Table:
    table = Table(title=title)
    for column in (first, "total µs", "share", "calls", "µs per call", *((detail,) if detail else ())):
        table.add_column(column)
    for row in rows:
        share = f"{100 * row.total_us / total:.1f}%"
        per_call = f"{row.total_us / max(row.calls, 1):.1f}"
        table.add_row(
            row.name or "-", str(row.total_us), share, str(row.calls), per_call, *((row.detail,) if detail else ())
        )
    return table
