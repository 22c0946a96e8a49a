"""``onnxmux run MODEL``: run a model once on given or random inputs and summarize the outputs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from onnxmux.cli.common import add_provider_option_argument, provider_specs, random_input
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.session import InferenceSession


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("run", help="run a model on given or random inputs")
    p.add_argument("model", type=Path)
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a .npy file")
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    add_provider_option_argument(p)
    p.add_argument("--repeat", type=int, default=1, help="runs to time (the median is shown)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def main(args: argparse.Namespace) -> int:
    """Run the model and print each output's shape, dtype and a short summary, and the time."""
    session = InferenceSession(str(args.model), providers=provider_specs(args.providers, args.provider_option))
    feed = _given_inputs(args.input)
    rng = np.random.default_rng(args.seed)
    for arg in session.get_inputs():
        if arg.name not in feed:
            feed[arg.name] = random_input(arg, rng)
    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        outputs = session.run(None, feed)
        times.append(time.perf_counter() - start)
    table = Table(title=f"{args.model.name} on {', '.join(session.get_providers())}")
    for column in ("output", "shape", "dtype", "summary"):
        table.add_column(column)
    for arg, value in zip(session.get_outputs(), outputs):
        table.add_row(arg.name, *_describe(value))
    console = Console()
    console.print(table)
    console.print(f"run time: {np.median(times) * 1000:.2f} ms (median of {len(times)})")
    return 0


def _given_inputs(items: list[str]) -> dict[str, np.ndarray]:
    feed = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--input '{item}' must be NAME=FILE.npy")
        try:
            feed[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--input '{name}': cannot read '{path}': {exc}") from exc
    return feed


def _describe(value: object) -> tuple[str, str, str]:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub" and value.size:
            data = value.astype(np.float64)
            summary = f"min {data.min():.4g}  max {data.max():.4g}  mean {data.mean():.4g}"
        else:
            summary = np.array2string(value.ravel()[:4], threshold=4)
        return str(list(value.shape)), str(value.dtype), summary
    return "-", type(value).__name__, repr(value)[:60]
