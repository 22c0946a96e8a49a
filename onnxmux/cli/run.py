"""``onnxmux run MODEL``: run a model once on given or random inputs and summarize the outputs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from onnxmux.cli import profile_summary
from onnxmux.cli.common import add_provider_option_argument, positive_int, provider_specs
from onnxmux.cli.inputs import inputs_table, load_inputs, parse_dims, parse_shapes, random_feed
from onnxmux.core.options import SessionOptions
from onnxmux.core.session import InferenceSession


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("run", help="run a model on given or random inputs")
    p.add_argument("model", type=Path, help="the .onnx file to run")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a .npy file (repeatable)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=1x3x224x224", help="the shape of a random input (repeatable)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE", help="the value of a symbolic dimension such as batch (repeatable; default 1)")
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    add_provider_option_argument(p)
    p.add_argument("--repeat", type=positive_int, default=1, help="runs to time (the median is shown)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--profile", action="store_true", help="profile the runs (onnxruntime's format) and print a summary")
    p.add_argument("--profile-prefix", default="onnxmux_profile", help="where --profile writes: PREFIX_<time>.json")


def main(args: argparse.Namespace) -> int:
    """Run the model and print each output's shape, dtype and a short summary, and the time."""
    options = SessionOptions()
    if args.profile:
        options.enable_profiling = True
        options.profile_file_prefix = args.profile_prefix
    session = InferenceSession(str(args.model), options, providers=provider_specs(args.providers, args.provider_option))
    given = load_inputs(args.input)
    feed, notes = random_feed(session.get_inputs(), given, parse_shapes(args.shape), parse_dims(args.dim), args.seed)
    console = Console()
    console.print(inputs_table(session.get_inputs(), feed, given))
    for note in notes:
        console.print(note)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        outputs = session.run(None, feed)
        times.append(time.perf_counter() - start)
    table = Table(title=f"{args.model.name} on {', '.join(session.get_providers())}")
    for column in ("output", "shape", "dtype", "summary"):
        table.add_column(column)
    for arg, value in zip(session.get_outputs(), outputs):
        table.add_row(arg.name, *_describe(value))
    console.print(table)
    console.print(f"run time: {np.median(times) * 1000:.2f} ms (median of {len(times)})")
    if args.profile:
        path = session.end_profiling()
        profile_summary.print_summary(profile_summary.summarize(profile_summary.load_events(path)), console)
        console.print(f"profile written to {path}")
    return 0


def _describe(value: object) -> tuple[str, str, str]:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub" and value.size:
            data = value.astype(np.float64)
            summary = f"min {data.min():.4g}  max {data.max():.4g}  mean {data.mean():.4g}"
        else:
            summary = np.array2string(value.ravel()[:4], threshold=4)
        return str(list(value.shape)), str(value.dtype), summary
    return "-", type(value).__name__, repr(value)[:60]
