"""The ``onnxmux`` command: run a model, show its plan, list and report providers, merge reports, run the demo."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from onnxmux.cli import batch, demo, matrix, plan, providers, report, run
from onnxmux.cli.common import one_line_warnings
from onnxmux.core.errors import OnnxMuxError

COMMANDS = {"run": run, "plan": plan, "providers": providers, "report": report, "demo": demo, "matrix": matrix, "batch": batch}


def build_parser() -> argparse.ArgumentParser:
    """The ``onnxmux`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="onnxmux", description="ONNX inference with pluggable providers")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and dispatch to a sub-command; errors and warnings print one clear line."""
    args = build_parser().parse_args(argv)
    with one_line_warnings(args.command):
        try:
            return COMMANDS[args.command].main(args)
        except OnnxMuxError as exc:
            print(f"onnxmux {args.command}: error: {exc}", file=sys.stderr)
            return 2
