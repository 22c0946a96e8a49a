"""The optimizer as sessions use it: levels, user rules, disabled rules, the saved model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux


def conv_bn_relu() -> bytes:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "scale"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "var"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
            helper.make_node("Neg", ["b"], ["n1"], name="neg1"),
            helper.make_node("Neg", ["n1"], ["n2"], name="neg2"),
            helper.make_node("Relu", ["n2"], ["y"], name="relu"),
        ],
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


X = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)


def _session(level, rules=(), disable="", path="") -> onnxmux.InferenceSession:
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = level
    for rule in rules:
        options.add_optimizer_rule(rule)
    if disable:
        options.add_session_config_entry("optimization.disable_rules", disable)
    options.optimized_model_filepath = path
    return onnxmux.InferenceSession(conv_bn_relu(), options)


REFERENCE = _session(onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, {"x": X})[0]


def _ops(session) -> list[str]:
    return [n["op_type"] for n in session.get_execution_plan().to_dict()["nodes"]]


@pytest.mark.parametrize("level", list(onnxmux.GraphOptimizationLevel))
def test_every_level_gives_the_same_outputs(level) -> None:
    np.testing.assert_allclose(_session(level).run(None, {"x": X})[0], REFERENCE, rtol=1e-4, atol=1e-5)


def test_levels_rewrite_progressively() -> None:
    assert "BatchNormalization" in _ops(_session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC))
    assert "BatchNormalization" not in _ops(_session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED))
    fused = _ops(_session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_ALL, rules=[DoubleNegation()]))
    assert "FusedConv" in fused and "Relu" not in fused


def test_disabled_rule_is_skipped() -> None:
    session = _session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, disable="FuseConvBatchNorm")
    assert "BatchNormalization" in _ops(session)
    np.testing.assert_allclose(session.run(None, {"x": X})[0], REFERENCE, rtol=1e-4, atol=1e-5)


class DoubleNegation(onnxmux.PatternRule):
    """Neg(Neg(x)) -> x."""

    name = "DoubleNegation"

    def match(self, node: ir.Node):
        inner = node.inputs[0].producer() if node.op_type == "Neg" else None
        return inner if inner is not None and inner.op_type == "Neg" else None

    def rewrite(self, graph: ir.Graph, node: ir.Node, match) -> None:
        node.outputs[0].replace_all_uses_with(match.inputs[0])


class Explodes(onnxmux.Rule):
    name = "Explodes"

    def apply(self, graph: ir.Graph) -> int:
        graph.remove(graph.node(0), safe=False)
        raise RuntimeError("rule bug")


class Dangles(onnxmux.Rule):
    """Leaves a node reading a value nobody defines."""

    name = "Dangles"

    def apply(self, graph: ir.Graph) -> int:
        relu = next(n for n in graph if n.op_type == "Relu")
        relu.replace_input_with(0, ir.Value(name="nowhere"))
        return 1


def test_user_rule_runs() -> None:
    session = _session(onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL, rules=[DoubleNegation()])
    assert "Neg" not in _ops(session)
    np.testing.assert_allclose(session.run(None, {"x": X})[0], REFERENCE, rtol=1e-5)


@pytest.mark.parametrize("rule", [Explodes(), Dangles()])
def test_broken_user_rule_is_named_rolled_back_and_skipped(rule, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        session = _session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_ALL, rules=[rule])
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(rule.name in m and "rolled back" in m for m in messages), messages
    np.testing.assert_allclose(session.run(None, {"x": X})[0], REFERENCE, rtol=1e-4, atol=1e-5)


def test_optimized_model_is_saved_valid_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "optimized.onnx"
    session = _session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_ALL, rules=[DoubleNegation()], path=str(path))
    saved = onnx.load(path)
    onnx.checker.check_model(saved)
    assert {"com.onnxmux"} <= {o.domain for o in saved.opset_import}
    assert "FusedConv" in [n.op_type for n in saved.graph.node]
    reloaded = onnxmux.InferenceSession(str(path))
    np.testing.assert_allclose(reloaded.run(None, {"x": X})[0], session.run(None, {"x": X})[0], rtol=1e-6)


def test_changes_are_logged_at_info(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="onnxmux"):
        _session(onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    assert any("FuseConvBatchNorm" in r.getMessage() and "->" in r.getMessage() for r in caplog.records)


def test_disabled_optimizers_argument_as_in_onnxruntime() -> None:
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = onnxmux.InferenceSession(conv_bn_relu(), options, disabled_optimizers=["FuseConvBatchNorm"])
    assert "BatchNormalization" in _ops(session)
    np.testing.assert_allclose(session.run(None, {"x": X})[0], REFERENCE, rtol=1e-4, atol=1e-5)


def ir3_model() -> bytes:
    """An IR-3 model (every initializer also listed as a graph input): Conv+BatchNormalization and a
    ConstantOfShape chain, which only fold when those initializers count as constants."""
    rng = np.random.default_rng(2)
    arrays = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "scale": rng.random(4).astype(np.float32) + 0.5,
        "bias": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.random(4).astype(np.float32) + 0.5,
        "shape": np.array([1, 4, 8, 8], np.int64),
    }
    half = numpy_helper.from_array(np.array([0.5], np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
            helper.make_node("ConstantOfShape", ["shape"], ["k"], name="fill", value=half),
            helper.make_node("Mul", ["k", "k"], ["k2"], name="square"),
            helper.make_node("Add", ["b", "k2"], ["y"], name="add"),
        ],
        "ir3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
        + [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in arrays.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3).SerializeToString()


def test_ir3_initializers_are_constants_that_fold_and_fuse(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(ir3_model(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    outputs = {}
    for level in (onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL, onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED):
        options = onnxmux.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(tmp_path / f"{int(level)}.onnx")
        session = onnxmux.InferenceSession(ir3_model(), options)
        assert [i.name for i in session.get_inputs()] == ["x"]
        assert session.get_overridable_initializers() == []
        outputs[level] = session.run(None, {"x": x})[0]
        with pytest.raises(onnxmux.InvalidArgument, match="'w'"):
            session.run(None, {"x": x, "w": np.zeros((4, 3, 3, 3), np.float32)})
    saved = onnx.load(str(tmp_path / f"{int(onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)}.onnx"))
    onnx.checker.check_model(saved)
    assert [n.op_type for n in saved.graph.node] == ["Conv", "Add"]
    np.testing.assert_allclose(outputs[onnxmux.GraphOptimizationLevel.ORT_ENABLE_EXTENDED], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs[onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL], expected, rtol=1e-5, atol=1e-5)
