"""``onnxmux plan MODEL --providers a,b``: where each node runs, the fused subgraphs, the copies."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from onnxmux.cli.common import add_provider_option_argument, provider_specs
from onnxmux.core.session import InferenceSession


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("plan", help="show how a model is partitioned across providers")
    p.add_argument("model", type=Path)
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    add_provider_option_argument(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON (get_execution_plan().to_dict())")


def main(args: argparse.Namespace) -> int:
    """Print the plan as tables, or as JSON."""
    session = InferenceSession(str(args.model), providers=provider_specs(args.providers, args.provider_option))
    plan = session.get_execution_plan()
    data = plan.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = Console()
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
        table = Table(title="nodes that a preferred provider passed on")
        for column in ("node", "op", "ran on", "why the preferred providers passed"):
            table.add_column(column)
        for node, reasons in fallbacks:
            why = "; ".join(f"{p}: {r}" for p, r in reasons.items())
            table.add_row(node["name"], node["op_type"], node["provider"], why)
        console.print(table)
    return 0
