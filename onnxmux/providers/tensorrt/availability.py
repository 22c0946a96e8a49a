"""Whether the TensorRT provider can run here, and why not when it cannot.

TensorRT and CuPy are imported here, never at import of onnxmux: discovery lists the provider
on every machine, and a machine without them, a driver or a GPU must see "unavailable: reason".
Every reason says that the provider is experimental and has not run on hardware.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

#: Said wherever the provider is described: its GPU path has never been executed.
EXPERIMENTAL = "experimental, not run on hardware"

Importer = Callable[[str], Any]


def tensorrt_reason(importer: Importer = importlib.import_module) -> str | None:
    """None when the tensorrt package imports, else why not."""
    try:
        importer("tensorrt")
    except ImportError as exc:
        return f"tensorrt not installed (pip install onnxmux[tensorrt]): {exc}; {EXPERIMENTAL}"
    except Exception as exc:  # a broken TensorRT install (missing libnvinfer) raises anything at import
        return f"tensorrt failed to import: {type(exc).__name__}: {exc}; {EXPERIMENTAL}"
    return None


def cuda_reason(importer: Importer = importlib.import_module) -> str | None:
    """None when CuPy imports and sees a CUDA device, else why not (engines read and write CuPy buffers)."""
    try:
        cupy = importer("cupy")
    except ImportError as exc:
        return f"CuPy not installed (pip install onnxmux[cuda] or onnxmux[cuda12] for the CuPy of your CUDA): {exc}; {EXPERIMENTAL}"
    except Exception as exc:
        return f"CuPy failed to import: {type(exc).__name__}: {exc}; {EXPERIMENTAL}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, an old driver, or no GPU
        return f"no CUDA device ({type(exc).__name__}: {exc}); {EXPERIMENTAL}"
    if count == 0:
        return f"no CUDA device; {EXPERIMENTAL}"
    return None


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when TensorRT imports and a CUDA device is visible, else the first reason (checked once per process)."""
    return tensorrt_reason() or cuda_reason()
