"""The provider test kit itself: suite counts, expected failures, its session config, and that its
hook check reports a runtime that does not fall back."""

from __future__ import annotations

from pathlib import Path

import pytest

import onnxmux
from onnxmux.cli.demo import build_cnn
from onnxmux.core.provider import KernelProvider
from onnxmux.partition.failures import FailureRule
from onnxmux.testing import ProviderKit, checks

from helpers import affine_relu_model


def test_node_suite_counts_and_expected_failures(tmp_path: Path) -> None:
    expected = tmp_path / "expected.txt"
    expected.write_text("# known\ntest_abs  # listed, but it passes\n")
    report = ProviderKit("test-device", expected).node_suite("^test_(relu|abs)$")
    assert (report.total, report.passed) == (2, 2)
    assert (report.cases_with_nodes_here, report.cases_entirely_here) == (1, 1)  # Relu: an even-length name
    assert report.unexpected_passes == ["test_abs"]
    assert report.problems() == ["TestDeviceExecutionProvider: node test test_abs passed but is listed as an expected failure"]


def test_every_kit_session_checks_provider_outputs(monkeypatch) -> None:
    seen = []

    class Recording(onnxmux.InferenceSession):
        def __init__(self, model, options=None, providers=None, **kwargs):
            seen.append((providers, options.get_session_config_entry(checks.CHECK_OUTPUTS_ENTRY) if options else None))
            super().__init__(model, options, providers, **kwargs)

    monkeypatch.setattr(onnxmux, "InferenceSession", Recording)
    kit = ProviderKit("test-device")
    assert kit.check([affine_relu_model()], ["copies", "against_cpu", "concurrency"]) == []
    with_provider = [value for providers, value in seen if "TestDeviceExecutionProvider" in providers]
    assert len(with_provider) == 3 and set(with_provider) == {"1"}


def test_hook_check_passes_when_the_runtime_falls_back_and_reports_when_it_does_not(monkeypatch) -> None:
    assert "kernel_for" in checks.FALLBACK_HOOKS[KernelProvider]
    assert checks.check_hook_fallback("TestDeviceExecutionProvider", build_cnn()) == []

    def no_fallback(self, provider, hook, nodes, exc, consequence=""):  # a runtime without the failure rule
        raise exc

    monkeypatch.setattr(FailureRule, "hook_failed", no_fallback)
    problems = checks.check_hook_fallback("TestDeviceExecutionProvider", build_cnn())
    assert problems == [
        "TestDeviceExecutionProvider: with 'kernel_for' raising, session creation failed instead of falling back: "
        "RuntimeError: fault injected into kernel_for"
    ]


def test_unknown_provider_or_check_is_refused() -> None:
    with pytest.raises(onnxmux.InvalidArgument, match="'nosuch' is not installed"):
        ProviderKit("nosuch")
    with pytest.raises(onnxmux.InvalidArgument, match="unknown check 'speed'"):
        ProviderKit("cpu").check([affine_relu_model()], ["speed"])
