"""Datasets as shards: a Parquet file, a folder of Parquet files, or a folder of ``.npy`` files.

A shard is the unit of output and of resuming: each is written to a file named after it, and a
rerun skips the shards whose file exists. Batches are read lazily, so memory stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from onnxmux.core.errors import InvalidArgument

#: Rows (files) per shard of a ``.npy`` folder.
NPY_SHARD_FILES = 1024
#: The columns a ``.npy`` folder's batches hold: the file's array, and its name as the row key.
NPY_DATA_COLUMN = "data"
NPY_KEY_COLUMN = "file"


@dataclass(frozen=True)
class Shard:
    """One input file (Parquet) or group of files (``.npy``), with its row count."""

    name: str
    files: tuple[Path, ...]
    rows: int

    @property
    def is_npy(self) -> bool:
        """Whether the shard is a group of ``.npy`` files, one row each."""
        return self.files[0].suffix == ".npy"

    def batches(self, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The shard's rows, ``batch_size`` at a time."""
        if self.is_npy:
            for start in range(0, len(self.files), batch_size):
                yield load_npy(self.files[start : start + batch_size])
            return
        reader = pq.ParquetFile(self.files[0])
        present = set(reader.schema_arrow.names)
        wanted = [c for c in columns if c in present] if columns is not None else None
        for batch in reader.iter_batches(batch_size=batch_size, columns=wanted):
            yield pa.Table.from_batches([batch])


def find_shards(source: str | Path) -> list[Shard]:
    """The shards of a dataset, in a stable order; InvalidArgument when it holds no data."""
    path = Path(source)
    if path.is_file():
        if path.suffix != ".parquet":
            raise InvalidArgument(f"source '{path}': expected a .parquet file or a folder")
        return [_parquet_shard(path, path.stem)]
    if not path.is_dir():
        raise InvalidArgument(f"source '{path}' does not exist")
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        return [_parquet_shard(p, "__".join(p.relative_to(path).with_suffix("").parts)) for p in parquet]
    arrays = sorted(path.glob("*.npy"))
    if not arrays:
        raise InvalidArgument(f"source '{path}' holds no .parquet or .npy files")
    return [
        Shard(f"npy-{i // NPY_SHARD_FILES:05d}", tuple(arrays[i : i + NPY_SHARD_FILES]), len(arrays[i : i + NPY_SHARD_FILES]))
        for i in range(0, len(arrays), NPY_SHARD_FILES)
    ]


def _parquet_shard(path: Path, name: str) -> Shard:
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise InvalidArgument(f"source '{path}' is not a readable Parquet file: {exc}") from None
    return Shard(name, (path,), rows)


def load_npy(files: tuple[Path, ...] | list[Path]) -> pa.Table:
    """``.npy`` files as a batch: each file one row; a file that cannot be read is a null row."""
    arrays = np.empty(len(files), dtype=object)
    for i, file in enumerate(files):
        try:
            arrays[i] = np.load(file, allow_pickle=False)
        except (OSError, ValueError):
            arrays[i] = None
    shapes = {a.shape for a in arrays if a is not None}
    if len(shapes) == 1 and all(a is not None for a in arrays) and arrays[0].dtype != object:
        data: pa.Array = pa.FixedShapeTensorArray.from_numpy_ndarray(np.stack(list(arrays)))
    else:
        data = pa.array([None if a is None else a.tolist() for a in arrays])
    return pa.table({NPY_DATA_COLUMN: data, NPY_KEY_COLUMN: pa.array([f.name for f in files])})
