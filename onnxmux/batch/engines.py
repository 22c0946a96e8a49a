"""The two engines: threads over one session on this machine, or actors on a Ray cluster.

Both yield ``(shard, results)`` in the order of the shards and of their rows, so the writing,
row ids, progress and resuming in ``onnxmux.batch.predict`` are the same for both.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from onnxmux.batch.predictor import Predictor
from onnxmux.batch.sources import Shard, load_npy
from onnxmux.core.errors import InvalidArgument

#: The column naming each row's shard in the Ray engine's results.
SHARD_COLUMN = "__shard__"


def run_local(shards: list[Shard], predictor: Predictor, batch_size: int, workers: int) -> Iterator[tuple[Shard, pa.Table]]:
    """Score with ``workers`` threads sharing one session; at most two batches per worker in flight."""
    pending: deque[tuple[Shard, Future]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="onnxmux-batch") as pool:
        try:
            for shard in shards:
                for batch in shard.batches(batch_size, predictor.columns):
                    pending.append((shard, pool.submit(predictor, batch)))
                    if len(pending) >= 2 * workers:
                        shard_done, future = pending.popleft()
                        yield shard_done, future.result()
            while pending:
                shard_done, future = pending.popleft()
                yield shard_done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def run_ray(
    shards: list[Shard],
    predictor_args: dict[str, Any],
    batch_size: int,
    workers: int,
    gpus_per_worker: float,
    address: str | None,
) -> Iterator[tuple[Shard, pa.Table]]:
    """Score on a Ray cluster: Ray Data reads the shards and ``Predictor`` actors score them."""
    try:
        import ray
    except ImportError:
        raise InvalidArgument('the Ray engine needs Ray Data: pip install "onnxmux[ray]"') from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # predict shows its own
    by_name = {s.name: s for s in shards}
    dataset = _ray_dataset(ray, shards, batch_size)
    args = {**predictor_args, "passthrough": [*predictor_args.get("passthrough", ()), SHARD_COLUMN]}
    scored = dataset.map_batches(
        Predictor,
        fn_constructor_kwargs=args,
        batch_size=batch_size,
        batch_format="pyarrow",
        # one actor first, growing to ``workers``, so that reading never waits for a CPU the actors hold
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_gpus=gpus_per_worker or None,
    )
    for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
        names = table.column(SHARD_COLUMN).to_pylist()
        start = 0
        while start < len(names):  # rows of a shard arrive together, in order
            end = start
            while end < len(names) and names[end] == names[start]:
                end += 1
            yield by_name[names[start]], table.slice(start, end - start).drop_columns([SHARD_COLUMN])
            start = end


def _ray_dataset(ray: Any, shards: list[Shard], batch_size: int) -> Any:
    """A Ray dataset of the shards' rows, each tagged with its shard's name."""
    if shards[0].is_npy:
        items = [{"path": str(f), SHARD_COLUMN: s.name} for s in shards for f in s.files]
        return ray.data.from_items(items).map_batches(_load_npy_rows, batch_size=batch_size, batch_format="pyarrow")
    names = {str(s.files[0].resolve()): s.name for s in shards}
    dataset = ray.data.read_parquet(list(names), include_paths=True)
    return dataset.map_batches(
        lambda t: t.append_column(SHARD_COLUMN, pa.array([names[_resolved(p)] for p in t.column("path").to_pylist()])).drop_columns(["path"]),
        batch_format="pyarrow",
        batch_size=None,
    )


def _resolved(path: str) -> str:
    return str(Path(path if path.startswith("/") else "/" + path).resolve())


def _load_npy_rows(table: pa.Table) -> pa.Table:
    loaded = load_npy([Path(p) for p in table.column("path").to_pylist()])
    return loaded.append_column(SHARD_COLUMN, table.column(SHARD_COLUMN))
