"""A test kit for execution providers: what a provider package's own tests import.

``ProviderKit("acme")`` runs ONNX's node suite on ``[acme, cpu]`` and checks the provider on
given models: copies are real device crossings, every node's outputs match the CPU provider's,
a raising hook falls back, and concurrent runs match single-threaded ones. Every session it
creates sets ``session.check_provider_outputs``. See docs/testing-providers.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import onnx

from onnxmux.core import discovery
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import ExecutionProvider
from onnxmux.testing.checks import CHECKS, kit_options
from onnxmux.testing.suite import SuiteReport, run_node_suite

__all__ = ["ProviderKit", "SuiteReport", "kit_options"]


class ProviderKit:
    """The kit's checks for one provider, given by name, alias or class (a class is registered)."""

    def __init__(self, provider: str | type[ExecutionProvider], expected_failures: Path | str | None = None) -> None:
        if isinstance(provider, type):
            discovery.register_provider(provider)
            provider = provider.name
        entry = discovery.find(provider)
        if entry is None:
            raise InvalidArgument(f"provider '{provider}' is not installed (onnxmux providers lists what is)")
        reason = entry.unavailable_reason()
        if reason is not None:
            raise InvalidArgument(f"provider '{entry.name}' is unavailable here: {reason}")
        self.provider = entry.name
        self.expected_failures = Path(expected_failures) if expected_failures else None

    def node_suite(self, pattern: str | None = None, progress: Callable[[int, int], None] | None = None) -> SuiteReport:
        """ONNX's node tests matching ``pattern`` on ``[provider, cpu]``, with the expected failures."""
        return run_node_suite(self.provider, pattern, self.expected_failures, kit_options(), progress)

    def check(self, models: Iterable[onnx.ModelProto], checks: Iterable[str] = tuple(CHECKS)) -> list[str]:
        """Run the named checks (all by default: copies, against_cpu, hook_fallback, concurrency) on each model."""
        problems = []
        for model in models:
            for name in checks:
                if name not in CHECKS:
                    raise InvalidArgument(f"unknown check '{name}' (checks: {', '.join(CHECKS)})")
                problems += CHECKS[name](self.provider, model)
        return problems
