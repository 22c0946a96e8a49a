"""The ``onnxmux`` command: run a model, list providers, run the demo."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from onnxmux.cli import demo, matrix, plan, providers, report, run
from onnxmux.core.errors import OnnxMuxError

COMMANDS = {"run": run, "plan": plan, "providers": providers, "report": report, "demo": demo, "matrix": matrix}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and dispatch to a sub-command; errors print one clear line."""
    parser = argparse.ArgumentParser(prog="onnxmux", description="ONNX inference with pluggable providers")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].main(args)
    except OnnxMuxError as exc:
        print(f"onnxmux {args.command}: error: {exc}", file=sys.stderr)
        return 2
