"""The Acme providers checked with onnxmux's provider test kit (the ``provider_kit`` pytest fixture)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from onnxmux.cli.demo import build_cnn
from onnxmux.testing.checks import CHECKS
from onnxmux.testing.plugin import assert_no_problems
from onnxmux_acme.graph import AcmeGraphExecutionProvider
from onnxmux_acme.kernels import AcmeExecutionProvider

EXPECTED_FAILURES = Path(__file__).with_name("expected_failures.txt")
#: The node tests of the operators each provider implements.
NODE_TESTS = {
    AcmeExecutionProvider: r"^test_(relu|add|mul|matmul|gemm)(_|$)",
    AcmeGraphExecutionProvider: r"^test_(add|sub|mul|div|relu|tanh|exp|sigmoid)(_|$)",
}


def elementwise_chain() -> onnx.ModelProto:
    """y = tanh(x * x) + x, a chain the graph provider fuses."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "x"], ["squared"], name="square"),
            helper.make_node("Tanh", ["squared"], ["squashed"], name="tanh"),
            helper.make_node("Add", ["squashed", "x"], ["y"], name="residual"),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("provider", list(NODE_TESTS), ids=lambda cls: cls.name)
def test_node_suite(provider_kit, provider) -> None:
    report = provider_kit.node_suite(provider_kit(provider, EXPECTED_FAILURES), NODE_TESTS[provider])
    assert report.cases_with_nodes_here > 0, report.summary()


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("provider", list(NODE_TESTS), ids=lambda cls: cls.name)
def test_kit_check(provider_kit, provider, check) -> None:
    assert_no_problems(provider_kit(provider).check([build_cnn(), elementwise_chain()], [check]))
