"""The hardware-matrix board: reports of several machines (``onnxmux report --json``) merged into one
machines × providers grid, rendered as Markdown or HTML, and compared with a baseline."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxmux.core.errors import InvalidArgument

CPU = "CPUExecutionProvider"


def load_report(path: Path) -> dict[str, Any]:
    """One machine's report; anything else is an InvalidArgument naming the file."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read report '{path}': {exc}") from exc
    if isinstance(report, list):
        raise InvalidArgument(f"'{path}' is a list of rows from an older onnxmux report: run `onnxmux report --json` again")
    if not isinstance(report, dict) or not isinstance(report.get("providers"), list) or "machine" not in report:
        raise InvalidArgument(f"'{path}' is not the JSON of `onnxmux report --json` (no 'machine' and 'providers')")
    return report


@dataclass
class Board:
    """Reports by machine label, and every provider any of them lists, in order of appearance."""

    reports: dict[str, dict[str, Any]]

    @classmethod
    def merge(cls, paths: list[Path]) -> "Board":
        """Load and merge reports; two reports of one machine label are an error."""
        reports: dict[str, dict[str, Any]] = {}
        sources: dict[str, Path] = {}
        for path in paths:
            report = load_report(path)
            label = str(report["machine"])
            if label in reports:
                raise InvalidArgument(f"'{path}' and '{sources[label]}' are both reports of machine '{label}'")
            reports[label], sources[label] = report, path
        return cls(reports)

    @property
    def providers(self) -> list[str]:
        """Provider names in order of first appearance."""
        return list(dict.fromkeys(row["provider"] for r in self.reports.values() for row in r["providers"]))

    def row(self, machine: str, provider: str) -> dict[str, Any] | None:
        """The report row of ``provider`` on ``machine``, None when that machine does not list it."""
        return next((row for row in self.reports[machine]["providers"] if row["provider"] == provider), None)


def cell(row: dict[str, Any] | None, total: int) -> tuple[str, str]:
    """A board cell as (state, text): state is works, regressions, unavailable or absent."""
    if row is None:
        return "absent", "not reported"
    if not row["available"]:
        return "unavailable", f"unavailable: {row.get('reason') or 'no reason given'}"
    if row["provider"] == CPU:
        speed = f"reference, {row['demo_ms']:.2f} ms"
    else:
        ratio = row["demo_vs_cpu"]
        verdict = f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"
        speed = f"{verdict} than CPU ({row['demo_ms']:.2f} vs {row['cpu_demo_ms']:.2f} ms)"
    text = (
        f"{row['passed']}/{total} passed; ran nodes in {row['cases_with_nodes_here']} cases "
        f"({row['cases_entirely_here']} entirely); {row['op_types_here']} of {row['op_types_in_suite']} op types; {speed}"
    )
    if row["regressions"]:
        return "regressions", f"{len(row['regressions'])} node tests fail that pass on CPU; {text}"
    return "works", text


def _versions(report: dict[str, Any]) -> list[str]:
    """``machine, platform, onnxmux, onnx, node tests, provider SDKs`` of one report."""
    sdks = sorted({f"{name} {version}" for row in report["providers"] for name, version in row.get("sdk", {}).items()})
    versions = report.get("versions", {})
    scope = f"{report['node_tests']}" + (f" (-k {report['pattern']})" if report.get("pattern") else " (all)")
    return [str(report["machine"]), report.get("platform", ""), versions.get("onnxmux", "?"), versions.get("onnx", "?"), scope, ", ".join(sdks) or "-"]


VERSION_COLUMNS = ["machine", "platform", "onnxmux", "onnx", "node tests", "provider SDKs"]
ICONS = {"works": "✅", "regressions": "❌", "unavailable": "⛔", "absent": "·"}


def to_markdown(board: Board, regressions: list[str] | None = None) -> str:
    """The board, the machines' versions and, when compared with a baseline, the regressions."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    machines = list(board.reports)
    out = ["# onnxmux hardware matrix", "", line(["provider", *machines]), line(["---"] * (len(machines) + 1))]
    for provider in board.providers:
        cells = []
        for machine in machines:
            state, text = cell(board.row(machine, provider), board.reports[machine]["node_tests"])
            cells.append(f"{ICONS[state]} {text}")
        out.append(line([provider, *cells]))
    out += ["", "## Machines", "", line(VERSION_COLUMNS), line(["---"] * len(VERSION_COLUMNS))]
    out += [line(_versions(r)) for r in board.reports.values()]
    if regressions is not None:
        out += ["", "## Regressions against the baseline", ""]
        out += [f"- {r}" for r in regressions] or ["none"]
    return "\n".join(out) + "\n"


def to_html(board: Board, regressions: list[str] | None = None) -> str:
    """The same content as ``to_markdown``, as one self-contained page."""
    e = html.escape
    machines = list(board.reports)
    rows = []
    for provider in board.providers:
        cells = "".join(
            f'<td class="{state}">{e(text)}</td>'
            for state, text in (cell(board.row(m, provider), board.reports[m]["node_tests"]) for m in machines)
        )
        rows.append(f"<tr><th>{e(provider)}</th>{cells}</tr>")
    versions = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _versions(r)) + "</tr>" for r in board.reports.values())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>onnxmux hardware matrix</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}",
        "td,th{border:1px solid #bbb;padding:.4em;vertical-align:top;text-align:left;max-width:28em}",
        ".works{background:#e3f6e3}.regressions{background:#fbe0e0}.unavailable{background:#eee;color:#555}.absent{color:#999}",
        "</style></head><body><h1>onnxmux hardware matrix</h1>",
        "<table><tr><th>provider</th>" + "".join(f"<th>{e(m)}</th>" for m in machines) + "</tr>" + "".join(rows) + "</table>",
        "<h2>Machines</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in VERSION_COLUMNS) + "</tr>" + versions + "</table>",
    ]
    if regressions is not None:
        items = "".join(f"<li>{e(r)}</li>" for r in regressions) or "<li>none</li>"
        parts.append(f"<h2>Regressions against the baseline</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def find_regressions(board: Board, baseline: Board) -> list[str]:
    """What got worse on each machine present in both: availability, passes, coverage, newly failing tests."""
    found = []
    for machine, old in baseline.reports.items():
        new = board.reports.get(machine)
        if new is None:
            continue
        comparable = (old["node_tests"], old.get("pattern")) == (new["node_tests"], new.get("pattern"))
        for old_row in old["providers"]:
            name = old_row["provider"]
            if not old_row["available"]:
                continue
            row = board.row(machine, name)
            if row is None or not row["available"]:
                why = "it is no longer reported" if row is None else f"unavailable: {row.get('reason')}"
                found.append(f"{machine}: {name} was available and now is not ({why})")
                continue
            if not comparable:
                continue
            for key, what in (("passed", "node tests passed"), ("cases_with_nodes_here", "cases running nodes on it"), ("op_types_here", "op types run on it")):
                if row[key] < old_row[key]:
                    found.append(f"{machine}: {name}: {what} fell from {old_row[key]} to {row[key]}")
            newly = sorted(set(row["regressions"]) - set(old_row["regressions"]))
            if newly:
                found.append(f"{machine}: {name}: newly failing where the CPU passes: {', '.join(newly)}")
    return found
