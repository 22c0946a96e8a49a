"""SparseTensor: onnxruntime's COO/CSR sparse tensor holder, on the host.

onnxmux runs sparse initializers densified; a SparseTensor is built and read back here (for
code that constructs them) and turns into a dense array with ``to_dense``; sessions do not
take it as a feed.
"""

from __future__ import annotations

import enum
from typing import Any, Sequence

import numpy as np

from onnxmux.core.errors import InvalidArgument


class OrtSparseFormat(enum.IntEnum):
    """The layout of a SparseTensor."""

    ORT_SPARSE_UNDEFINED = 0
    ORT_SPARSE_COO = 1
    ORT_SPARSE_CSRC = 2
    ORT_SPARSE_BLOCK_SPARSE = 4


class _View:
    def __init__(self, **arrays: np.ndarray) -> None:
        self._arrays = arrays

    def __getattr__(self, name: str) -> Any:
        arrays = self.__dict__.get("_arrays", {})
        if name in arrays:
            return lambda: arrays[name]
        raise AttributeError(name)


class SparseTensor:
    """A sparse tensor in COO or CSR layout, with onnxruntime's constructors and accessors."""

    def __init__(self, fmt: OrtSparseFormat, dense_shape: Sequence[int], values: np.ndarray, **indices: np.ndarray) -> None:
        self.format = fmt
        self._shape = [int(d) for d in dense_shape]
        self._values = np.asarray(values)
        self._indices = {k: np.asarray(v, dtype=np.int64) for k, v in indices.items()}

    @classmethod
    def sparse_coo_from_numpy(cls, dense_shape: Sequence[int], values: np.ndarray, coo_indices: np.ndarray, ort_device: Any = None) -> SparseTensor:
        """COO: ``coo_indices`` holds flat indices (1-D) or one coordinate row per value (2-D)."""
        indices = np.asarray(coo_indices, dtype=np.int64)
        if indices.shape[0] != len(values) and indices.size != len(values) * len(dense_shape):
            raise InvalidArgument(f"coo_indices of shape {list(indices.shape)} do not match {len(values)} values")
        return cls(OrtSparseFormat.ORT_SPARSE_COO, dense_shape, values, indices=indices)

    @classmethod
    def sparse_csr_from_numpy(
        cls, dense_shape: Sequence[int], values: np.ndarray, inner_indices: np.ndarray, outer_indices: np.ndarray, ort_device: Any = None
    ) -> SparseTensor:
        """CSR of a 2-D tensor: column indices (inner) and row offsets (outer)."""
        if len(dense_shape) != 2:
            raise InvalidArgument("CSR sparse tensors are 2-D")
        return cls(OrtSparseFormat.ORT_SPARSE_CSRC, dense_shape, values, inner=inner_indices, outer=outer_indices)

    def values(self) -> np.ndarray:
        """The non-zero values."""
        return self._values

    def dense_shape(self) -> list[int]:
        """The shape of the dense tensor."""
        return list(self._shape)

    def data_type(self) -> str:
        """``sparse_tensor(float)`` and so on."""
        from onnxmux.core.types import dtype_name

        return f"sparse_tensor({dtype_name(self._values.dtype)})"

    def device_name(self) -> str:
        """Always ``cpu``."""
        return "cpu"

    def as_coo_view(self) -> Any:
        """The COO indices (``.indices()``)."""
        self._expect(OrtSparseFormat.ORT_SPARSE_COO)
        return _View(indices=self._indices["indices"])

    def as_csrc_view(self) -> Any:
        """The CSR indices (``.inner()``, ``.outer()``)."""
        self._expect(OrtSparseFormat.ORT_SPARSE_CSRC)
        return _View(inner=self._indices["inner"], outer=self._indices["outer"])

    def to_dense(self) -> np.ndarray:
        """The dense tensor."""
        dense = np.zeros(self._shape, self._values.dtype)
        if self.format == OrtSparseFormat.ORT_SPARSE_COO:
            indices = self._indices["indices"]
            if indices.ndim == 1:
                dense.reshape(-1)[indices] = self._values
            else:
                dense[tuple(indices.reshape(len(self._values), -1).T)] = self._values
        else:
            outer, inner = self._indices["outer"], self._indices["inner"]
            for row in range(self._shape[0]):
                dense[row, inner[outer[row] : outer[row + 1]]] = self._values[outer[row] : outer[row + 1]]
        return dense

    def _expect(self, fmt: OrtSparseFormat) -> None:
        if self.format != fmt:
            raise InvalidArgument(f"the sparse tensor is {self.format.name}, not {fmt.name}")
