"""Bounded allocation: a tensor a model asks for beyond ``session.max_tensor_bytes`` is refused
before it is allocated (ConstantOfShape, Expand, Tile, Range, Resize, sparse densification)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from onnxmux.core import run_control
from onnxmux.core.errors import InvalidArgument, OnnxMuxError, RuntimeFailure

#: Session config entry: the largest tensor, in bytes, one of the operators above may create.
MAX_TENSOR_BYTES_KEY = "session.max_tensor_bytes"


def _default_limit() -> int:
    """Half of the machine's physical memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return 8 << 30


DEFAULT_MAX_TENSOR_BYTES = _default_limit()


def max_tensor_bytes(options: Any) -> int | None:
    """The session's limit, None when not set (the default applies); InvalidArgument unless the
    entry is a positive whole number."""
    text = options.config(MAX_TENSOR_BYTES_KEY).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        raise InvalidArgument(f"session config entry '{MAX_TENSOR_BYTES_KEY}' must be a positive number of bytes, got '{text}'")
    return int(text)


def check_tensor_bytes(
    where: str, shape: Sequence[int], dtype: Any, limit: int | None = None, error: type[OnnxMuxError] = RuntimeFailure
) -> None:
    """Raise ``error`` when a tensor of ``shape`` and ``dtype`` would exceed the limit in force.

    Without ``limit``, the limit of the running session applies (the default outside a run).
    """
    if limit is None:
        control = run_control.active()
        limit = (control.max_bytes if control is not None else None) or DEFAULT_MAX_TENSOR_BYTES
    size = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
    if size > limit:
        raise error(
            f"{where}: a tensor of shape {list(shape)} would take {size} bytes, over {MAX_TENSOR_BYTES_KEY}={limit}"
        )
