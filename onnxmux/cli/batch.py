"""``onnxmux batch MODEL SOURCE DEST``: score a dataset and write the predictions as Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from onnxmux.cli.common import provider_list
from onnxmux.core.errors import InvalidArgument


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser(
        "batch",
        help="score a dataset (Parquet, or a folder of .npy files) and write predictions as Parquet",
        description="Scores every row of SOURCE and writes one Parquet file per input shard to DEST. "
        "A rerun skips shards already written; rows that fail go to DEST/_failed with their id and the error.",
    )
    p.add_argument("model", type=Path, help="the ONNX model")
    p.add_argument("source", type=Path, help="a .parquet file, a folder of them, or a folder of .npy files")
    p.add_argument("dest", type=Path, help="the folder the prediction shards are written to")
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="rows per session run (default 256)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="threads on this machine, or a Ray cluster")
    p.add_argument("--address", help="the Ray cluster to join (default: start a local one)")
    p.add_argument("--workers", type=int, help="threads (local) or actors (ray); default: one per core")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor takes, for GPU providers")
    p.add_argument("--input", action="append", default=[], metavar="NAME=COLUMN[,COLUMN...]",
                   help="the column(s) feeding a model input (several numeric columns become its features)")
    p.add_argument("--output", action="append", default=[], metavar="NAME=COLUMN",
                   help="write model output NAME as COLUMN (when given, only the outputs named are written)")
    p.add_argument("--key", help="a source column written beside the predictions (default: a row_id)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the batch job; the exit status is 1 when some rows failed."""
    from onnxmux.batch import predict

    summary = predict(
        args.model,
        args.source,
        args.dest,
        providers=provider_list(args.providers),
        batch_size=args.batch_size,
        engine=args.engine,
        inputs={name: value.split(",") for name, value in _pairs(args.input, "--input")},
        outputs=dict(_pairs(args.output, "--output")) or None,
        key=args.key,
        workers=args.workers,
        address=args.address,
        gpus_per_worker=args.gpus_per_worker,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    console = Console(stderr=True)
    console.print(
        f"{summary.rows} rows in {summary.seconds:.1f} s ({summary.rows_per_second:,.1f} rows/s); "
        f"{summary.shards_written} shards written, {summary.shards_skipped} already done; "
        f"{summary.failed} rows failed" + (f" (see {args.dest / '_failed'})" if summary.failed else ""),
        highlight=False,
    )
    return 1 if summary.failed else 0


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InvalidArgument(f"{flag} '{item}' must be NAME=COLUMN")
        pairs.append((name, value))
    return pairs
