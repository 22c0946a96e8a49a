"""``predict``: score a dataset with a model and write the predictions, resumably."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from onnxmux.batch.engines import run_local, run_ray
from onnxmux.batch.predictor import Predictor
from onnxmux.batch.sink import ShardWriter, is_done
from onnxmux.batch.sources import NPY_DATA_COLUMN, NPY_KEY_COLUMN, Shard, find_shards
from onnxmux.core.errors import InvalidArgument

#: The id column written beside the predictions when the source has no key column.
ROW_ID_COLUMN = "row_id"
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchSummary:
    """What a run did: rows scored and failed, shards written and skipped, time taken."""

    rows: int
    failed: int
    shards_written: int
    shards_skipped: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Throughput over the rows this run scored."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def predict(
    model: str | os.PathLike,
    source: str | os.PathLike,
    destination: str | os.PathLike,
    providers: Sequence[Any] | None = None,
    provider_options: Sequence[dict[str, Any]] | None = None,
    batch_size: int = 256,
    engine: str = "local",
    inputs: Mapping[str, Sequence[str]] | None = None,
    outputs: Mapping[str, str] | None = None,
    key: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    progress: bool = False,
    on_shard_done: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Score every row of ``source`` with ``model`` and write Parquet shards to ``destination``.

    Shards already in ``destination`` are skipped (resuming an interrupted run); rows that fail
    go to ``destination/_failed``. ``key`` names a source column copied beside the predictions
    (default: a ``row_id`` counting rows from 0 across the dataset, or the file name for ``.npy``).
    """
    if engine not in ENGINES:
        raise InvalidArgument(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise InvalidArgument(f"workers must be at least 1, got {workers}")
    shards = find_shards(source)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    if shards[0].is_npy:
        key = key or NPY_KEY_COLUMN
    args = {
        "model": str(model),
        "providers": providers,
        "provider_options": provider_options,
        "inputs": _npy_inputs(str(model), inputs) if shards[0].is_npy else inputs,
        "outputs": outputs,
        "passthrough": [key] if key else [],
        "intra_op_num_threads": 1 if workers > 1 and engine == "local" else 0,
    }
    offsets = _row_offsets(shards)
    todo = [s for s in shards if not is_done(destination, s.name)]
    start = time.perf_counter()
    if engine == "local":
        results = run_local(todo, Predictor(**args), batch_size, workers)
    else:
        results = run_ray(todo, args, batch_size, workers, gpus_per_worker, address)
    rows = failed = 0
    writer: ShardWriter | None = None
    with _Progress(sum(s.rows for s in todo), progress) as bar:
        try:
            for shard, table in results:
                if writer is None or writer.shard != shard.name:
                    if writer is not None:
                        failed += _finish(writer, on_shard_done)
                    writer = ShardWriter(destination, shard.name)
                if not key:
                    first = offsets[shard.name] + writer.rows
                    table = table.add_column(0, ROW_ID_COLUMN, pa.array(range(first, first + table.num_rows), pa.int64()))
                writer.write(table, [key or ROW_ID_COLUMN])
                rows += table.num_rows
                bar.advance(table.num_rows)
            if writer is not None:
                failed += _finish(writer, on_shard_done)
                writer = None
        finally:
            if writer is not None:  # interrupted: the unfinished shard is redone by the next run
                writer.abandon()
    return BatchSummary(rows, failed, len(todo), len(shards) - len(todo), time.perf_counter() - start)


def _finish(writer: ShardWriter, on_shard_done: Callable[[str], None] | None) -> int:
    """Close a finished shard; returns its failed rows."""
    writer.close()
    if on_shard_done is not None:
        on_shard_done(writer.shard)
    return writer.failed


def _row_offsets(shards: list[Shard]) -> dict[str, int]:
    offsets, total = {}, 0
    for shard in shards:
        offsets[shard.name] = total
        total += shard.rows
    return offsets


def _npy_inputs(model: str, inputs: Mapping[str, Sequence[str]] | None) -> Mapping[str, Sequence[str]]:
    """A ``.npy`` folder has one data column: it feeds the model's only input unless told otherwise."""
    if inputs:
        return inputs
    import onnx

    proto = onnx.load(model, load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in initializers]
    if len(names) != 1:
        raise InvalidArgument(f"a .npy folder feeds one input; the model has {len(names)}: map it with --input NAME=data")
    return {names[0]: [NPY_DATA_COLUMN]}


class _Progress:
    """A progress bar (rows done, rows/s, time left) when asked for; counts rows either way."""

    def __init__(self, total: int, shown: bool) -> None:
        self.total = total
        self.rows = 0
        self.bar = None
        if shown:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("rows", total=total, rate="-")
        self.start = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self.bar is not None:
            rate = self.rows / max(time.perf_counter() - self.start, 1e-9)
            self.bar.update(self.task, advance=rows, rate=f"{rate:,.0f}")
