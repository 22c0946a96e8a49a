"""Batch inference throughput and memory: a plain ``session.run`` loop, the local engine, Ray.

Usage::

    python benchmarks/bench_batch.py throughput [--cnn-rows 256] [--forest-rows 20000] [--batch 32] [--workers 2]
    python benchmarks/bench_batch.py memory [--rows 20000,200000]

``throughput`` writes each model's rows as four Parquet shards, then scores the same rows three
ways: a plain loop over ``session.run`` on arrays already in memory (no reading or writing: the
best a hand-written loop can do), ``onnxmux.batch.predict`` with the local engine, and with the
Ray engine on a local cluster of ``--workers`` actors. It prints rows/s for each. The models are
``benchmarks/models.py``'s ResNet-18 (batch ``--batch``) and ``benchmarks/ml_models.py``'s
100-tree random forest (batch 256).

``memory`` scores datasets of 3x32x32 images (the ``onnxmux demo`` CNN) of each row count in a
fresh subprocess and prints the dataset's size on disk against the process's peak RSS: a flat
peak across sizes shows the engine streams.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxmux  # noqa: E402
from onnxmux.batch import predict  # noqa: E402

SHARDS = 4


def write_shards(folder: Path, columns: dict[str, np.ndarray]) -> None:
    """``columns`` (rows first) as SHARDS Parquet files; tensors as fixed-shape tensor columns."""
    folder.mkdir(parents=True)
    rows = len(next(iter(columns.values())))
    for i, part in enumerate(np.array_split(np.arange(rows), SHARDS)):
        table = {}
        for name, values in columns.items():
            chunk = values[part]
            table[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(chunk) if chunk.ndim > 1 else pa.array(chunk)
        pq.write_table(pa.table(table), folder / f"part-{i}.parquet")


def plain_loop(model: Path, feeds: dict[str, np.ndarray], batch: int) -> float:
    """Rows/s of one session run over the in-memory rows, ``batch`` at a time."""
    session = onnxmux.InferenceSession(str(model))
    rows = len(next(iter(feeds.values())))
    start = time.perf_counter()
    for first in range(0, rows, batch):
        session.run(None, {k: v[first : first + batch] for k, v in feeds.items()})
    return rows / (time.perf_counter() - start)


def throughput(args: argparse.Namespace) -> None:
    from benchmarks import ml_models, models

    import ray

    ray.init(num_cpus=args.workers + 1, include_dashboard=False, log_to_driver=False)
    cnn = models.resnet18("dynamo")
    images = np.random.default_rng(0).standard_normal((args.cnn_rows, 3, 224, 224)).astype(np.float32)
    forest = ml_models.load(ml_models.Spec("forest", "multiclass", zipmap=False))
    x = np.resize(forest.x_test, (args.forest_rows, forest.x_test.shape[1]))
    cases = [
        ("ResNet-18", cnn, {"input": images}, args.batch, None),
        ("random forest", forest.path, {"f": x}, 256, {"input": ["f"]}),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, feeds, batch, inputs in cases:
            source = Path(tmp) / name.replace(" ", "_")
            write_shards(source, feeds)
            model_feeds = {"input": x} if inputs else feeds
            row = {"model": name, "rows": len(x) if inputs else len(images), "batch": batch,
                   "plain loop": plain_loop(model, model_feeds, batch)}
            for engine in ("local", "ray"):
                summary = predict(model, source, Path(tmp) / f"{source.name}-{engine}", batch_size=batch,
                                  engine=engine, workers=args.workers, inputs=inputs)
                row[f"{engine} engine"] = summary.rows_per_second
            results.append(row)
            print(json.dumps(row), flush=True)
    ray.shutdown()
    print("\n| model | rows | batch | plain loop (rows/s) | local engine | Ray, %d workers |" % args.workers)
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['model']} | {r['rows']} | {r['batch']} | {r['plain loop']:,.1f} | {r['local engine']:,.1f} | {r['ray engine']:,.1f} |")


def memory(args: argparse.Namespace) -> None:
    print("| rows | dataset on disk | peak RSS of the local engine |")
    print("| ---: | ---: | ---: |")
    for rows in (int(r) for r in args.rows.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "images"
            source.mkdir()
            rng = np.random.default_rng(0)
            per_shard = 10_000
            for i, first in enumerate(range(0, rows, per_shard)):
                chunk = rng.standard_normal((min(per_shard, rows - first), 3, 32, 32)).astype(np.float32)
                pq.write_table(pa.table({"image": pa.FixedShapeTensorArray.from_numpy_ndarray(chunk)}),
                               source / f"part-{i:04d}.parquet", compression="none")
            size = sum(p.stat().st_size for p in source.iterdir())
            out = subprocess.run(
                [sys.executable, __file__, "_score", str(source), str(Path(tmp) / "out")],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            print(f"| {rows:,} | {size / 2**20:,.0f} MiB | {int(out[0]) / 1024:,.0f} MiB ({out[1]} rows/s) |", flush=True)


def _score(source: str, destination: str) -> None:
    """Score with the demo CNN in this process; print the peak RSS (KiB) and rows/s."""
    import onnx

    from onnxmux.cli.demo import build_cnn

    model = Path(destination).with_suffix(".onnx")
    onnx.save(build_cnn(), model)
    summary = predict(model, source, destination, batch_size=256)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, f"{summary.rows_per_second:.0f}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_score":
        _score(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--cnn-rows", type=int, default=256)
    p.add_argument("--forest-rows", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p = sub.add_parser("memory")
    p.add_argument("--rows", default="20000,200000")
    args = parser.parse_args()
    throughput(args) if args.what == "throughput" else memory(args)


if __name__ == "__main__":
    main()
