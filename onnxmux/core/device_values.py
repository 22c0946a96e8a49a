"""Feeds that already live on an accelerator (CuPy arrays, PyTorch CUDA tensors...): recognised
through DLPack so the session checks their type and shape without copying them to the host;
the provider's DataTransfer adopts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: DLPack device types of host memory (kDLCPU, kDLCUDAHost, kDLROCMHost): numpy can read those.
_HOST_DLPACK = (1, 3, 11)


def is_device_array(value: Any) -> bool:
    """Whether ``value`` is a DLPack array outside host memory (numpy arrays never are)."""
    if isinstance(value, (np.ndarray, np.generic)) or not hasattr(value, "__dlpack_device__"):
        return False
    try:
        return value.__dlpack_device__()[0] not in _HOST_DLPACK
    except Exception:
        return False


def element_dtype(value: Any) -> np.dtype:
    """The numpy dtype of a device array's elements (PyTorch's ``torch.float32`` reads as float32)."""
    try:
        return np.dtype(value.dtype)
    except TypeError:
        return np.dtype(str(value.dtype).rsplit(".", 1)[-1])
