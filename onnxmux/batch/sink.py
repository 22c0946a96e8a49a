"""Where predictions go: one Parquet file per shard, written atomically, and dead letters.

A shard's file appears under its final name only once complete (written under a temporary
name, then renamed), so an interrupted run leaves no half shard that a rerun would skip.
Rows that failed go to ``_failed/<shard>.parquet`` with their id and the error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from onnxmux.batch.predictor import ERROR_COLUMN

FAILED_FOLDER = "_failed"


def output_path(destination: Path, shard: str) -> Path:
    """The file holding a finished shard's predictions."""
    return destination / f"{shard}.parquet"


def is_done(destination: Path, shard: str) -> bool:
    """Whether a previous run finished this shard."""
    return output_path(destination, shard).exists()


class ShardWriter:
    """Streams one shard's results: predictions to its file, failed rows to its dead letters."""

    def __init__(self, destination: Path, shard: str) -> None:
        self.shard = shard
        self.final = output_path(destination, shard)
        self.failed_final = destination / FAILED_FOLDER / f"{shard}.parquet"
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        self.failed_partial = self.failed_final.with_name(f".{self.failed_final.name}.partial")
        self.writer: pq.ParquetWriter | None = None
        self.failed_writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.failed = 0

    def write(self, table: pa.Table, id_columns: list[str]) -> None:
        """Append one batch of results (with id columns, outputs and the error column)."""
        errors = table.column(ERROR_COLUMN)
        ok = pc.is_null(errors)
        good = table.filter(ok).drop_columns([ERROR_COLUMN])
        bad = table.filter(pc.invert(ok)).select([*id_columns, ERROR_COLUMN])
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.partial, good.schema)
        self.writer.write_table(good)
        self.rows += table.num_rows
        if bad.num_rows:
            if self.failed_writer is None:
                self.failed_partial.parent.mkdir(parents=True, exist_ok=True)
                self.failed_writer = pq.ParquetWriter(self.failed_partial, bad.rename_columns([*id_columns, "error"]).schema)
            self.failed_writer.write_table(bad.rename_columns([*id_columns, "error"]))
            self.failed += bad.num_rows

    def close(self) -> None:
        """Finish the shard: dead letters first, then the predictions under their final name."""
        if self.failed_writer is not None:
            self.failed_writer.close()
            os.replace(self.failed_partial, self.failed_final)
        if self.writer is not None:
            self.writer.close()
            os.replace(self.partial, self.final)

    def abandon(self) -> None:
        """Drop what an interrupted shard wrote, so a rerun starts it afresh."""
        for writer, path in ((self.writer, self.partial), (self.failed_writer, self.failed_partial)):
            if writer is not None:
                writer.close()
                path.unlink(missing_ok=True)
