"""ONNX's node suite for ``[provider, cpu]``: pass counts, and how much of each case the provider ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import onnxmux
from onnxmux.conformance import CaseResult, load_expected_failures, run_case, select_cases


@dataclass
class SuiteReport:
    """The outcome of the node suite for one provider (in front of the CPU provider)."""

    provider: str
    results: list[CaseResult]
    expected_failures: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Cases run."""
        return len(self.results)

    @property
    def passed(self) -> int:
        """Cases whose every output matched ONNX's expected one."""
        return sum(r.passed for r in self.results)

    @property
    def cases_with_nodes_here(self) -> int:
        """Cases in which the provider ran at least one node."""
        return sum(self.provider in r.placement for r in self.results)

    @property
    def cases_entirely_here(self) -> int:
        """Cases in which the provider ran every node."""
        return sum(set(r.placement) == {self.provider} for r in self.results)

    @property
    def unexpected_failures(self) -> list[CaseResult]:
        """Failed cases not listed in the expected-failures file."""
        return [r for r in self.results if not r.passed and r.name not in self.expected_failures]

    @property
    def unexpected_passes(self) -> list[str]:
        """Cases listed as expected failures that passed (the list is out of date)."""
        return [r.name for r in self.results if r.passed and r.name in self.expected_failures]

    def problems(self) -> list[str]:
        """One line per unexpected failure or pass, naming the case and what went wrong."""
        lines = [f"{self.provider}: node test {r.name} failed: {r.reason}" for r in self.unexpected_failures]
        lines += [f"{self.provider}: node test {name} passed but is listed as an expected failure" for name in self.unexpected_passes]
        return lines

    def summary(self) -> str:
        """``N passed of T; provider ran nodes in A cases, all nodes in B``."""
        return (
            f"{self.provider}: {self.passed} passed of {self.total} node tests; it ran nodes in "
            f"{self.cases_with_nodes_here} cases, every node in {self.cases_entirely_here}"
        )


def run_node_suite(
    provider: str,
    pattern: str | None = None,
    expected_failures: Path | None = None,
    options: onnxmux.SessionOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    provider_options: dict[str, dict[str, Any]] | None = None,
) -> SuiteReport:
    """Run the node tests matching ``pattern`` on ``[provider, cpu]``; ``progress(done, total)`` after each.

    ``provider_options`` maps a provider's full name to its options."""
    cases: Sequence = select_cases(pattern)
    names = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    providers = [(name, (provider_options or {}).get(name, {})) for name in names]
    results = []
    for done, case in enumerate(cases, 1):
        results.append(run_case(case, providers, options))
        if progress is not None:
            progress(done, len(cases))
    expected = load_expected_failures(expected_failures) if expected_failures else {}
    return SuiteReport(provider, results, expected)
