"""``onnxmux providers``: every provider found, and whether it can run here or why not."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from onnxmux.cli.common import wide_console
from onnxmux.core import discovery


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    sub.add_parser("providers", help="list execution providers and their availability")


def main(args: argparse.Namespace) -> int:
    """Print one row per provider: name, aliases, device, status."""
    table = Table(title="onnxmux execution providers")
    for column in ("provider", "aliases", "device", "status"):
        table.add_column(column, no_wrap=column != "status")  # names stay whole; reasons wrap
    found = discovery.discover(timeout=discovery.import_timeout())
    for name in discovery.get_all_providers():
        entry = found.get(name)
        if entry is None:
            table.add_row(name, "", "", f"[yellow]{escape(discovery.not_installed_reason(name))}[/]")
            continue
        reason = entry.unavailable_reason()
        device = entry.cls.device if entry.cls else ""
        status = "[green]available[/]" if reason is None else f"[red]unavailable[/]: {escape(reason)}"
        note = getattr(entry.cls, "note", "")
        if note and note not in status:
            status += f" ({note})"
        table.add_row(name, ", ".join(entry.aliases), device, status)
    wide_console().print(table)
    return 0
