"""The execution-provider interfaces that the core and every provider plugin are written against."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.registry import KernelDef, KernelRegistry


class ExecutionProvider:
    """Base of every provider: its names, device, options and availability.

    Subclasses set ``name`` (onnxruntime's spelling, e.g. ``CPUExecutionProvider``),
    ``aliases`` (short names such as ``cpu``) and ``device``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    device: ClassVar[str] = "cpu"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the provider can run on this machine, else why not (package, hardware)."""
        return None


class KernelProvider(ExecutionProvider):
    """A provider that runs single nodes through kernels from its registry."""

    registry: ClassVar[KernelRegistry]
    #: The array module its kernels compute with (numpy on the CPU).
    xp: ClassVar[Any] = np

    def kernel_for(self, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
        """The kernel that runs this node, or None with the reason it cannot."""
        kernel = self.registry.lookup(ctx.domain, ctx.op_type, ctx.opset)
        if kernel is None:
            versions = self.registry.versions(ctx.domain, ctx.op_type)
            if versions:
                return None, f"no kernel for opset {ctx.opset} (kernels from versions {versions})"
            return None, "no kernel for this operator"
        if kernel.supports is not None:
            reason = kernel.supports(ctx)
            if reason:
                return None, reason
        return kernel, None
