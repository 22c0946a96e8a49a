"""onnxruntime's module-level functions: device and build information, logging, seeding, telemetry."""

from __future__ import annotations

import logging
import platform
import threading

import numpy as np

from onnxmux.core import discovery

logger = logging.getLogger("onnxmux")

#: onnxruntime's severities (0 verbose ... 4 fatal) as ``logging`` levels.
_SEVERITY_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}

_seed: list[int | None] = [None]
_seed_lock = threading.Lock()


def get_device() -> str:
    """``GPU`` when an available provider runs on a CUDA device, else ``CPU``, as onnxruntime reports its build."""
    for entry in discovery.discover().values():
        if entry.cls is not None and str(entry.cls.device).startswith("cuda") and entry.unavailable_reason() is None:
            return "GPU"
    return "CPU"


def get_version_string() -> str:
    """onnxmux's version."""
    from onnxmux import __version__

    return __version__


def get_build_info() -> str:
    """What this onnxmux runs on (onnxmux is pure Python: there is no native build)."""
    return f"onnxmux {get_version_string()}, Python {platform.python_version()}, numpy {np.__version__}"


def set_default_logger_severity(severity: int) -> None:
    """Set the ``onnxmux`` logger's level from onnxruntime's severity (0 verbose ... 4 fatal)."""
    if severity not in _SEVERITY_LEVELS:
        from onnxmux.core.errors import InvalidArgument

        raise InvalidArgument(f"logger severity must be 0 (verbose) to 4 (fatal), got {severity!r}")
    logger.setLevel(_SEVERITY_LEVELS[severity])


def set_default_logger_verbosity(verbosity: int) -> None:
    """Accepted: onnxruntime's verbose-log detail; onnxmux's verbose level is ``logging.DEBUG`` alone."""


def set_seed(seed: int) -> None:
    """Seed the random operators that have no ``seed`` attribute in sessions created afterwards."""
    with _seed_lock:
        _seed[0] = int(seed)


def new_generator() -> np.random.Generator:
    """A generator for a random node without a seed: from ``set_seed``'s seed when one was set."""
    with _seed_lock:
        return np.random.default_rng(_seed[0])


def enable_telemetry_events() -> None:
    """Accepted: onnxmux collects no telemetry."""


def disable_telemetry_events() -> None:
    """Accepted: onnxmux collects no telemetry."""
