"""``onnxmux plan MODEL --providers a,b``: where each node runs, the fused subgraphs, the copies."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.table import Table

from onnxmux.cli.common import add_provider_option_argument, provider_specs, wide_console
from onnxmux.cli.plan_page import annotate, plan_session, render
from onnxmux.core.session import InferenceSession


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("plan", help="show how a model is partitioned across providers")
    p.add_argument("model", type=Path, help="the .onnx file to partition")
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    add_provider_option_argument(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON (get_execution_plan().to_dict())")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the partitioned graph as one self-contained page (zoom, search)")
    p.add_argument("--annotate", type=Path, metavar="OUT.onnx", help="write the optimized model with each node's provider and partition in its metadata")
    p.add_argument("-v", "--verbose", action="store_true", help="list every node a preferred provider passed on, not counts by reason")


def main(args: argparse.Namespace) -> int:
    """Print the plan as tables, or as JSON."""
    providers = provider_specs(args.providers, args.provider_option)
    if args.html or args.annotate:
        session, optimized = plan_session(args.model, providers)
    else:
        session = InferenceSession(str(args.model), providers=providers)
    plan = session.get_execution_plan()
    data = plan.to_dict()
    if args.html:
        args.html.write_text(render(optimized, data, f"{args.model.name} on {', '.join(data['providers'])}"))
    if args.annotate:
        annotate(optimized, data, args.annotate)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = wide_console()
    per_provider = Table(title=f"{args.model.name}: nodes per provider")
    for column in ("provider", "nodes", "op types"):
        per_provider.add_column(column)
    for name in data["providers"]:
        ops = Counter(n["op_type"] for n in data["nodes"] if n["provider"] == name)
        summary = ", ".join(f"{op} {count}" for op, count in ops.most_common())
        per_provider.add_row(name, str(sum(ops.values())), summary or "-")
    console.print(per_provider)
    fused = [p for p in data["partitions"] if p["kind"] == "compiled"]
    if fused:
        table = Table(title="fused subgraphs")
        for column in ("partition", "provider", "device", "nodes"):
            table.add_column(column)
        for p in fused:
            table.add_row(str(p["id"]), p["provider"], p["device"], f"{len(p['nodes'])}: {', '.join(p['nodes'][:6])}{'...' if len(p['nodes']) > 6 else ''}")
        console.print(table)
    console.print(f"{len(data['partitions'])} partitions, {len(data['copies'])} copies between devices")
    if data["copies"]:
        copies = Table(title="copies")
        for column in ("value", "from", "to"):
            copies.add_column(column)
        for c in data["copies"]:
            copies.add_row(c["value"], c["from"], c["to"])
        console.print(copies)
    if plan.moved:
        table = Table(title="islands moved by session.placement_policy=cost")
        for column in ("nodes", "from", "to", "why"):
            table.add_column(column)
        for move in plan.moved:
            why = f"copies of {move['copy_bytes']} bytes outweigh {move['work']:.0f} of work"
            table.add_row(", ".join(move["nodes"]), move["from"], move["to"], why)
        console.print(table)
    fallbacks = [(n, plan.declined[n["name"]]) for n in data["nodes"] if n["name"] in plan.declined]
    if fallbacks:
        console.print(_fallback_table(fallbacks) if args.verbose else _reasons_table(fallbacks))
    return 0


def _fallback_table(fallbacks: list[tuple[dict, dict[str, str]]]) -> Table:
    """One row per node that ran on a provider later in the list, with each preferred provider's reason."""
    table = Table(title="nodes that a preferred provider passed on")
    for column in ("node", "op", "ran on", "why the preferred providers passed"):
        table.add_column(column)
    for node, reasons in fallbacks:
        table.add_row(node["name"], node["op_type"], node["provider"], "; ".join(f"{p}: {r}" for p, r in reasons.items()))
    return table


def _reasons_table(fallbacks: list[tuple[dict, dict[str, str]]]) -> Table:
    """The same nodes grouped by (provider, reason), most frequent first, with counts and a few examples."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for node, reasons in fallbacks:
        for provider, reason in reasons.items():
            groups.setdefault((provider, reason), []).append(node)
    table = Table(title=f"why preferred providers passed on {len(fallbacks)} nodes (--verbose lists them)")
    for column in ("provider", "reason", "nodes", "for example"):
        table.add_column(column)
    for (provider, reason), nodes in sorted(groups.items(), key=lambda item: -len(item[1])):
        examples = ", ".join(f"{n['name']} ({n['op_type']})" for n in nodes[:3]) + (", ..." if len(nodes) > 3 else "")
        table.add_row(provider, reason, str(len(nodes)), examples)
    return table
