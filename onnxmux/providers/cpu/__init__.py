"""The NumPy CPU provider: a kernel for every operator, the fallback behind every session."""

from __future__ import annotations

import importlib
import pkgutil

from onnxmux.core.provider import KernelProvider
from onnxmux.providers.cpu import ops
from onnxmux.providers.cpu.registry import REGISTRY


def _load_ops() -> None:
    """Import every module of ``ops`` so that its kernels register themselves."""
    for info in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"{ops.__name__}.{info.name}")


_load_ops()


class CPUExecutionProvider(KernelProvider):
    """Runs every node on the host with numpy."""

    name = "CPUExecutionProvider"
    aliases = ("cpu",)
    device = "cpu"
    registry = REGISTRY
