"""Whether the CUDA provider can run on this machine, and the exact reason when it cannot.

CuPy is imported here, never at import of onnxmux: discovery lists the provider on every
machine, and a machine without CuPy, a driver or a GPU must see "unavailable: reason".
"""

from __future__ import annotations

import functools
from typing import Any

#: cudaErrorInsufficientDriver, cudaErrorNoDevice: the two CUDA runtime errors we explain.
INSUFFICIENT_DRIVER = 35
NO_DEVICE = 100


def _version(number: int) -> str:
    """A CUDA version number (12040) as text (12.4)."""
    return f"{number // 1000}.{number % 1000 // 10}"


def import_cupy() -> tuple[Any, str | None]:
    """CuPy, or None with why it cannot be imported."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc}); install onnxmux[cuda] (CUDA 13) or onnxmux[cuda12] (CUDA 12)"
    except Exception as exc:  # a broken CuPy install raises anything at import
        return None, f"CuPy failed to import: {type(exc).__name__}: {exc}"
    return cupy, None


def device_count_reason(cupy: Any) -> tuple[int, str | None]:
    """The number of CUDA devices, or 0 with why CUDA cannot be used (no driver, old driver, no GPU)."""
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
    except runtime.CUDARuntimeError as exc:
        return 0, _runtime_error_reason(cupy, exc)
    except Exception as exc:  # the CUDA runtime library itself failed to load
        return 0, f"the CUDA runtime could not be loaded: {type(exc).__name__}: {exc}"
    if count == 0:
        return 0, "no CUDA device found"
    return count, None


def _runtime_error_reason(cupy: Any, exc: Exception) -> str:
    runtime = cupy.cuda.runtime
    try:
        driver, toolkit = runtime.driverGetVersion(), runtime.runtimeGetVersion()
    except Exception:
        driver, toolkit = 0, 0
    status = getattr(exc, "status", None)
    if status == NO_DEVICE:
        return "no CUDA device found (cudaErrorNoDevice)"
    if status == INSUFFICIENT_DRIVER and driver == 0:
        return "no CUDA device found: the NVIDIA driver (libcuda) is not installed"
    if status == INSUFFICIENT_DRIVER:
        return (
            f"driver/toolkit mismatch: the NVIDIA driver supports CUDA {_version(driver)}, but CuPy "
            f"{cupy.__version__} is built for CUDA {_version(toolkit)}; update the driver or install the "
            "CuPy for your driver's CUDA (onnxmux[cuda12] for CUDA 12)"
        )
    return f"CUDA could not be initialised: {exc}"


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when CuPy imports and sees at least one CUDA device, else why not (checked once per process)."""
    cupy, reason = import_cupy()
    if cupy is None:
        return reason
    return device_count_reason(cupy)[1]
