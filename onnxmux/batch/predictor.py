"""Predictor: one session scoring batches of rows, for the local engine and as a Ray Data actor.

A batch that fails is retried row by row, so one bad row (a wrong shape, a null, a kernel
error) costs only itself: its outputs are null and the column ``ERROR_COLUMN`` says why.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from onnxmux.batch.columns import OutputColumn, column_to_numpy, element_type, stack_rows
from onnxmux.core.errors import InvalidArgument, OnnxMuxError
from onnxmux.core.options import SessionOptions
from onnxmux.core.session import InferenceSession

#: The column of a predictor's result holding each failed row's error (null for rows that ran).
ERROR_COLUMN = "__error__"
#: What a bad row raises: onnxmux's own errors, and numpy's when a value cannot take the input's type.
_ROW_ERRORS = (OnnxMuxError, ValueError, TypeError)


class Predictor:
    """Scores Arrow batches with one InferenceSession; callable as ``map_batches(Predictor, ...)``.

    ``inputs`` maps a model input to the column(s) feeding it (several numeric columns become
    the features of one rank-2 input); by default an input reads the column of its own name.
    ``outputs`` maps model outputs to result columns (default: every output, under its name).
    ``passthrough`` columns (the row key, the source path) are copied to the result.
    """

    def __init__(
        self,
        model: str | bytes,
        providers: Sequence[Any] | None = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
        inputs: Mapping[str, Sequence[str]] | None = None,
        outputs: Mapping[str, str] | None = None,
        passthrough: Sequence[str] = (),
        intra_op_num_threads: int = 0,
    ) -> None:
        options = SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        self.session = InferenceSession(model, options, providers=providers, provider_options=provider_options)
        self.passthrough = list(passthrough)
        declared = {arg.name: arg for arg in self.session.get_inputs()}
        self.inputs = {name: list((inputs or {}).get(name, [name])) for name in declared}
        for name in inputs or {}:
            if name not in declared:
                raise InvalidArgument(f"--input names '{name}', which is not a model input ({', '.join(declared)})")
        self.input_types = {name: _input_type(arg) for name, arg in declared.items()}
        produced = {arg.name: arg for arg in self.session.get_outputs()}
        wanted = dict(outputs) if outputs else {name: name for name in produced}
        for name in wanted:
            if name not in produced:
                raise InvalidArgument(f"--output names '{name}', which is not a model output ({', '.join(produced)})")
        self.outputs = {
            column: OutputColumn(name, produced[name].type, len(produced[name].shape or []) or None)
            for name, column in wanted.items()
        }
        self.output_names = [c.output for c in self.outputs.values()]

    @property
    def columns(self) -> list[str]:
        """The source columns this predictor reads."""
        return sorted({c for cols in self.inputs.values() for c in cols} | set(self.passthrough))

    def schema(self) -> pa.Schema:
        """The schema of every result: passthrough columns are added in front of it."""
        fields = [pa.field(name, out.type) for name, out in self.outputs.items()]
        return pa.schema([*fields, pa.field(ERROR_COLUMN, pa.string())])

    def __call__(self, batch: pa.Table | pa.RecordBatch) -> pa.Table:
        """The predictions for ``batch``, one result row per input row, in order."""
        rows = batch.num_rows
        per_column: dict[str, list[Any]] = {name: [None] * rows for name in self.outputs}
        errors: list[str | None] = [None] * rows
        try:
            arrays = {c: column_to_numpy(batch.column(c)) for c in self._present(batch)}
        except OnnxMuxError as exc:  # a column the whole batch lacks
            errors = [_message(exc)] * rows
        else:
            try:
                self._score(arrays, slice(0, rows), per_column, 0)
            except _ROW_ERRORS:
                for i in range(rows):
                    try:
                        self._score(arrays, slice(i, i + 1), per_column, i)
                    except _ROW_ERRORS as exc:
                        errors[i] = _message(exc)
        table = {c: batch.column(c) for c in self.passthrough if c in batch.schema.names}
        for name, out in self.outputs.items():
            table[name] = out.column(per_column[name])
        table[ERROR_COLUMN] = pa.array(errors, type=pa.string())
        return pa.table(table)

    def _present(self, batch: pa.Table | pa.RecordBatch) -> list[str]:
        names = set(batch.schema.names)
        for name, cols in self.inputs.items():
            for column in cols:
                if column not in names:
                    raise InvalidArgument(
                        f"input '{name}': column '{column}' is missing (columns: {', '.join(sorted(names))})"
                    )
        return sorted({c for cols in self.inputs.values() for c in cols})

    def _score(self, arrays: dict[str, np.ndarray], rows: slice, out: dict[str, list[Any]], first: int) -> None:
        feed = {name: self._feed(name, [arrays[c][rows] for c in cols]) for name, cols in self.inputs.items()}
        results = dict(zip(self.output_names, self.session.run(self.output_names, feed)))
        for name, column in self.outputs.items():
            values = column.rows(results[column.output])
            if len(values) != rows.stop - rows.start:
                raise InvalidArgument(
                    f"output '{column.output}' has {len(values)} rows for {rows.stop - rows.start} input rows"
                )
            out[name][first : first + len(values)] = values

    def _feed(self, name: str, columns: list[np.ndarray]) -> np.ndarray:
        dtype, rank = self.input_types[name]
        try:
            parts = [stack_rows(c) for c in columns]
            value = parts[0] if len(parts) == 1 else np.stack(parts, axis=1)
        except InvalidArgument as exc:
            raise InvalidArgument(f"input '{name}': {exc}") from None
        if dtype is not None and value.dtype != dtype:
            value = value.astype(dtype)
        if rank is not None and value.ndim + 1 == rank:
            value = value.reshape(value.shape + (1,))
        return value


def _input_type(arg: Any) -> tuple[np.dtype | None, int | None]:
    match = re.fullmatch(r"tensor\((\w+)\)", arg.type)
    dtype = element_type(match.group(1)) if match else None
    return dtype, len(arg.shape) if arg.shape is not None else None


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
