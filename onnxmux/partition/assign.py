"""Priority assignment of nodes to kernel-based providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import UnsupportedOperator
from onnxmux.core.provider import ExecutionProvider, KernelProvider


@dataclass
class Assignment:
    """Where one node runs, and why each earlier provider passed on it."""

    node: str
    op_type: str
    domain: str
    provider: str
    declined: dict[str, str] = field(default_factory=dict)


@dataclass
class KernelAssigner:
    """Gives each node to the first provider, in priority order, that has a kernel for it."""

    providers: Sequence[ExecutionProvider]
    assignments: list[Assignment] = field(default_factory=list)

    def __call__(self, ctx: NodeContext) -> Callable[..., Any]:
        declined: dict[str, str] = {}
        for provider in self.providers:
            if not isinstance(provider, KernelProvider):
                continue
            kernel, reason = provider.kernel_for(ctx)
            if kernel is None:
                declined[provider.name] = reason or "declined"
                continue
            self.assignments.append(Assignment(ctx.name, ctx.op_type, ctx.domain, provider.name, declined))
            return kernel.factory(ctx, provider.xp)
        reasons = "; ".join(f"{name}: {why}" for name, why in declined.items())
        raise UnsupportedOperator(f"{ctx.describe()} cannot run on any selected provider ({reasons})")
