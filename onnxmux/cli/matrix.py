"""``onnxmux matrix REPORT.json...``: merge the reports of several machines into one board."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxmux.cli.board import Board, find_regressions, to_html, to_markdown


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("matrix", help="merge `onnxmux report --json` files of several machines into one board")
    p.add_argument("reports", type=Path, nargs="+", metavar="REPORT.json", help="reports of `onnxmux report --json`, one per machine")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the board as Markdown to FILE")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the board as a self-contained HTML page to FILE")
    p.add_argument(
        "--baseline", type=Path, action="append", default=[], metavar="OLD.json",
        help="an earlier report (repeatable, matched by machine label): list regressions and exit 1 if any",
    )


def main(args: argparse.Namespace) -> int:
    """Print the board as Markdown, write the files asked for; exit 1 on a regression against the baseline."""
    board = Board.merge(args.reports)
    regressions = find_regressions(board, Board.merge(args.baseline)) if args.baseline else None
    markdown = to_markdown(board, regressions)
    print(markdown, end="")
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.html:
        args.html.write_text(to_html(board, regressions))
    return 1 if regressions else 0
