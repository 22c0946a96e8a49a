"""The pytest plugin (entry point ``pytest11``): a ``provider_kit`` fixture and node-suite options.

``--onnxmux-k REGEX`` narrows the node suite a kit runs (for quick local runs).
"""

from __future__ import annotations

from pathlib import Path
import pytest

from onnxmux.testing import ProviderKit, SuiteReport


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the kit's command-line options."""
    group = parser.getgroup("onnxmux", "onnxmux provider test kit")
    group.addoption("--onnxmux-k", dest="onnxmux_k", default=None, help="only node tests matching this regular expression")


class KitFixture:
    """What the ``provider_kit`` fixture gives: kits by provider, and assertions with readable failures."""

    def __init__(self, pattern: str | None) -> None:
        self.pattern = pattern

    def __call__(self, provider: str | type, expected_failures: Path | str | None = None) -> ProviderKit:
        """A kit for ``provider``."""
        from onnxmux.testing import ProviderKit

        return ProviderKit(provider, expected_failures)

    def node_suite(self, kit: ProviderKit, pattern: str | None = None) -> SuiteReport:
        """The node suite (``--onnxmux-k`` wins over ``pattern``); fails the test on an unexpected result."""
        report = kit.node_suite(self.pattern or pattern)
        assert_no_problems(report.problems())
        return report


def assert_no_problems(problems: list[str]) -> None:
    """Fail the test with every problem on its own line."""
    if problems:
        pytest.fail(f"{len(problems)} problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def provider_kit(request: pytest.FixtureRequest) -> KitFixture:
    """Build kits for providers and assert their checks: ``kit = provider_kit("acme")``."""
    return KitFixture(request.config.getoption("onnxmux_k"))

