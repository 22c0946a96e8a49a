"""Kernel registry: kernel factories keyed by (domain, op type, since-version).

A provider registers one factory per operator version whose semantics differ; a node is
served by the factory with the largest since-version not above the model's opset.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from onnxmux.core.context import NodeContext

#: ``factory(ctx, xp) -> run``; ``run(*inputs)`` returns one value, or a tuple for several outputs.
KernelFactory = Callable[["NodeContext", Any], Callable[..., Any]]
#: ``supports(ctx) -> None`` when the kernel can run the node, else the reason it cannot.
SupportsCheck = Callable[["NodeContext"], Optional[str]]


@dataclass(frozen=True)
class KernelDef:
    """One registered kernel version."""

    op_type: str
    domain: str
    since: int
    factory: KernelFactory
    supports: SupportsCheck | None = None
    #: Inputs the kernel reads in host memory (shapes, axes), as numpy arrays, wherever it runs.
    host_inputs: tuple[int, ...] = ()


@dataclass
class KernelRegistry:
    """The kernels of one kernel-based provider."""

    _defs: dict[tuple[str, str], list[KernelDef]] = field(default_factory=dict)
    #: ``lookup``'s answers by (domain, op type, opset), forgotten when a kernel is added.
    _found: dict[tuple[str, str, int], KernelDef | None] = field(default_factory=dict)

    def register(
        self,
        op_type: str,
        *since: int,
        domain: str = "",
        supports: SupportsCheck | None = None,
        host_inputs: tuple[int, ...] = (),
    ) -> Callable[[KernelFactory], KernelFactory]:
        """Decorator registering ``factory`` for ``op_type`` at each since-version given (default 1).

        ``host_inputs`` lists inputs the kernel wants in host memory even on a device (a
        Reshape's shape, say), so no copy to the device is made for them.
        """

        def decorate(factory: KernelFactory) -> KernelFactory:
            for version in since or (1,):
                self.add(KernelDef(op_type, domain, version, factory, supports, host_inputs))
            return factory

        return decorate

    def add(self, kernel: KernelDef) -> None:
        """Add one kernel version, replacing an earlier one of the same version."""
        versions = self._defs.setdefault((kernel.domain, kernel.op_type), [])
        versions[:] = [k for k in versions if k.since != kernel.since]
        bisect.insort(versions, kernel, key=lambda k: k.since)
        self._found.clear()

    def lookup(self, domain: str, op_type: str, opset: int) -> KernelDef | None:
        """The kernel for a node of this op at this opset version, or None."""
        key = (domain, op_type, opset)
        if key in self._found:
            return self._found[key]
        versions = self._defs.get((_canonical(domain), op_type))
        i = bisect.bisect_right([k.since for k in versions], opset) if versions else 0
        found = self._found[key] = versions[i - 1] if i else None
        return found

    def versions(self, domain: str, op_type: str) -> list[int]:
        """The since-versions registered for an op."""
        return [k.since for k in self._defs.get((_canonical(domain), op_type), [])]

    def ops(self) -> list[tuple[str, str]]:
        """Every (domain, op type) with at least one kernel."""
        return sorted(self._defs)


def _canonical(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain
