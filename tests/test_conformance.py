"""ONNX's node-test suite on the CPU provider: every case passes except the listed ones."""

from __future__ import annotations

from pathlib import Path

from onnxmux.conformance import load_expected_failures, node_cases, run_case

EXPECTED = load_expected_failures(Path(__file__).with_name("expected_failures.txt"))


def test_node_suite_on_cpu(capsys) -> None:
    results = [run_case(case, ["cpu"]) for case in node_cases()]
    passed = sum(r.passed for r in results)
    unexpected = [f"{r.name}: {r.reason}" for r in results if not r.passed and r.name not in EXPECTED]
    now_passing = [r.name for r in results if r.passed and r.name in EXPECTED]
    with capsys.disabled():
        print(f"\nnode tests on CPUExecutionProvider: {passed} passed of {len(results)}")
    assert not unexpected, "unexpected failures:\n" + "\n".join(unexpected)
    assert not now_passing, "listed as expected failures but pass (remove them):\n" + "\n".join(now_passing)


def test_expected_failures_have_reasons() -> None:
    names = {case.name for case in node_cases()}
    for name, reason in EXPECTED.items():
        assert name in names, f"{name} is not a node test"
        assert reason, f"{name} has no reason"
