"""One rule for a provider hook that raises at session creation.

An exception from ``claim``, a kernel's ``supports``, a kernel factory, ``compile`` sends the nodes concerned to the next provider in the user's list, with one
warning naming the provider, the hook and the nodes (after ``rewrite_partition`` raises, the
provider keeps its nodes unfused, with the same warning). With the session config entry
``session.disable_cpu_ep_fallback`` set to "1", or when no other provider can run them, the
session fails with ``EPFail`` naming the same.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import EPFail, OnnxMuxError
from onnxmux.core.provider import ExecutionProvider, KernelProvider
from onnxmux.core.registry import KernelDef

#: Session config entry: "1" turns every provider failure into an error (no fallback).
DISABLE_FALLBACK_KEY = "session.disable_cpu_ep_fallback"


class ProviderFallbackWarning(UserWarning):
    """A provider hook raised and its nodes went to the next provider."""


def label(node: ir.Node) -> str:
    """``'name' (OpType)`` for messages."""
    return f"'{node.name or node.op_type}' ({node.op_type})"


def labels(nodes: Sequence[ir.Node]) -> str:
    """The first few node labels, for messages."""
    shown = ", ".join(label(n) for n in nodes[:3])
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {shown}{', ...' if len(nodes) > 3 else ''}"


def describe_failure(provider: ExecutionProvider, hook: str, nodes: Sequence[ir.Node], exc: BaseException) -> str:
    """``Provider.hook raised ... for N nodes: ...`` for warnings and errors."""
    return f"{provider.name}.{hook} raised {type(exc).__name__}: {exc} (for {labels(nodes)})"


class FailureRule:
    """Applies the failure rule of one session (strict when fallback is disabled)."""

    def __init__(self, config: Mapping[str, str]) -> None:
        self.strict = config.get(DISABLE_FALLBACK_KEY, "0") == "1"

    def hook_failed(
        self,
        provider: ExecutionProvider,
        hook: str,
        nodes: Sequence[ir.Node],
        exc: BaseException,
        consequence: str = "they fall back to the next provider",
    ) -> str:
        """Warn that ``nodes`` fall back (or raise EPFail when strict); returns the reason to record."""
        message = describe_failure(provider, hook, nodes, exc)
        if self.strict and isinstance(exc, OnnxMuxError):
            raise exc
        if self.strict:
            raise EPFail(f"{message}; no fallback because {DISABLE_FALLBACK_KEY} is set") from exc
        warnings.warn(f"{message}; {consequence}", ProviderFallbackWarning, stacklevel=4)
        return f"{hook} raised {type(exc).__name__}: {exc}"

    def kernel_fallback(
        self, provider: ExecutionProvider, later: Sequence[ExecutionProvider], ctx: NodeContext, exc: BaseException
    ) -> tuple[KernelProvider, KernelDef]:
        """The next kernel provider and kernel for a node whose kernel factory raised."""
        if not self.strict:
            for candidate in later:
                if not isinstance(candidate, KernelProvider):
                    continue
                try:
                    kernel, _ = candidate.kernel_for(ctx)
                except Exception as other:
                    self.hook_failed(candidate, "supports", [ctx.node], other)
                    continue
                if kernel is not None:
                    self.hook_failed(provider, "kernel factory", [ctx.node], exc)
                    return candidate, kernel
        if isinstance(exc, OnnxMuxError):
            raise exc  # a deliberate error (a bad attribute) that no other provider got past either
        message = describe_failure(provider, "kernel factory", [ctx.node], exc)
        why = f"{DISABLE_FALLBACK_KEY} is set" if self.strict else "no other provider can run it"
        raise EPFail(f"{message}; no fallback because {why}") from exc
