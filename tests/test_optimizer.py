"""The graph optimizer: every level computes what level 0 computes, and the rules do what they say.

Models are built with onnx.helper; each is optimized on the IR (``optimize`` and, for level 99,
the CPU provider's ``fuse``), serialized and run by a session with optimization disabled, then
compared with the unoptimized model (rtol 1e-4, atol 1e-5).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.conformance import RANDOM_OPS, compare, first_mismatch, node_cases, to_value
from onnxmux.core.loader import load
from onnxmux.core.optimizer import BUILTIN_RULES, PatternRule, Rule, optimize, save_optimized
from onnxmux.core.optimizer.editing import ONNXMUX_DOMAIN, is_constant
from onnxmux.core.optimizer.safety import Snapshot, graph_problems
from onnxmux.providers.cpu.fusion import fuse
from onnxmux.providers.cpu.registry import REGISTRY

RTOL, ATOL = 1e-4, 1e-5
LEVELS = (1, 2, 99)
FLOAT = TensorProto.FLOAT


# -- running ------------------------------------------------------------------------------


def optimized(model: onnx.ModelProto, level: int, **kwargs: Any) -> ir.Model:
    """The model's IR after ``optimize`` at ``level`` (and the CPU fusions at 99)."""
    ir_model = load(model).model
    optimize(ir_model, level, **kwargs)
    if level >= 99:
        fuse(ir_model.graph, list(ir_model.graph))
    return ir_model


def run(model: onnx.ModelProto | ir.Model, feeds: dict[str, np.ndarray]) -> list[Any]:
    """Outputs of a session with optimization disabled (the model is run exactly as given)."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxmux.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_same(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        problem = compare(g, w, RTOL, ATOL)
        assert problem is None, f"output {i}: {problem}"


def op_types(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17, name: str = "m") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


RNG = np.random.default_rng(0)


def randn(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# -- models -------------------------------------------------------------------------------


def cnn_model() -> onnx.ModelProto:
    """Conv+BN+Relu stem, a residual block (Conv+BN, Add, Relu), Conv with per-channel Mul and Add
    and assorted activations, then Flatten and a Gemm head."""
    c = 6

    def bn(prefix: str) -> list[onnx.TensorProto]:
        return [
            tensor(f"{prefix}_scale", RNG.uniform(0.5, 1.5, c).astype(np.float32)),
            tensor(f"{prefix}_bias", randn(c, scale=0.1)),
            tensor(f"{prefix}_mean", randn(c, scale=0.2)),
            tensor(f"{prefix}_var", RNG.uniform(0.5, 2.0, c).astype(np.float32)),
        ]

    def bn_node(x: str, prefix: str, y: str) -> onnx.NodeProto:
        params = [f"{prefix}_{p}" for p in ("scale", "bias", "mean", "var")]
        return helper.make_node("BatchNormalization", [x, *params], [y])

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        bn_node("c1", "bn1", "b1"),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "cb2"], ["c2"], pads=[1, 1, 1, 1]),
        bn_node("c2", "bn2", "b2"),
        helper.make_node("Add", ["b2", "r1"], ["s2"]),
        helper.make_node("Relu", ["s2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], group=2),
        helper.make_node("Mul", ["c3", "k3"], ["m3"]),
        helper.make_node("Add", ["a3", "m3"], ["d3"]),
        helper.make_node("Clip", ["d3", "lo", "hi"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4", "cb4"], ["c4"], strides=[2, 2]),
        helper.make_node("HardSigmoid", ["c4"], ["h4"], alpha=0.3),
        helper.make_node("Conv", ["h4", "w5"], ["c5"]),
        helper.make_node("LeakyRelu", ["c5"], ["l5"], alpha=0.2),
        helper.make_node("Conv", ["l5", "w6"], ["c6"]),
        helper.make_node("Sigmoid", ["c6"], ["g6"]),
        helper.make_node("Flatten", ["g6"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    initializers = [
        tensor("w1", randn(c, 3, 3, 3)),
        tensor("w2", randn(c, c, 3, 3, scale=0.2)),
        tensor("cb2", randn(c, scale=0.1)),
        tensor("w3", randn(c, c // 2, 1, 1)),
        tensor("k3", RNG.uniform(0.5, 2.0, (c, 1, 1)).astype(np.float32)),
        tensor("a3", randn(1, c, 1, 1)),
        tensor("lo", np.float32(-0.5)),
        tensor("hi", np.float32(1.0)),
        tensor("w4", randn(c, c, 3, 3, scale=0.2)),
        tensor("cb4", randn(c, scale=0.1)),
        tensor("w5", randn(c, c, 1, 1)),
        tensor("w6", randn(4, c, 1, 1)),
        tensor("wf", randn(5, 4 * 2 * 2)),
        tensor("bf", randn(5)),
        *bn("bn1"),
        *bn("bn2"),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 5])],
        initializers,
        name="cnn",
    )


def transformer_model(opset: int) -> onnx.ModelProto:
    """One post-LN encoder block as older exporters write it: decomposed LayerNorm, erf Gelu and
    tanh FastGelu spelled out, softmax as Exp/ReduceSum/Div, plus Identity, Dropout and no-op Cast."""
    hidden, seq = 8, 5
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def const(name: str, array: Any) -> str:
        initializers.append(tensor(name, np.asarray(array, np.float32)))
        return name

    def reduce(op: str, x: str, y: str, axes: list[int]) -> None:
        axes_from_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
        if axes_from_input:
            name = f"{y}_axes"
            initializers.append(tensor(name, np.array(axes, np.int64)))
            nodes.append(helper.make_node(op, [x, name], [y], keepdims=1))
        else:
            nodes.append(helper.make_node(op, [x], [y], axes=axes, keepdims=1))

    def layer_norm(x: str, y: str, tag: str) -> None:
        reduce("ReduceMean", x, f"{tag}_mean", [-1])
        nodes.append(helper.make_node("Sub", [x, f"{tag}_mean"], [f"{tag}_d"]))
        nodes.append(helper.make_node("Pow", [f"{tag}_d", const(f"{tag}_two", 2.0)], [f"{tag}_sq"]))
        reduce("ReduceMean", f"{tag}_sq", f"{tag}_var", [-1])
        nodes.append(helper.make_node("Add", [f"{tag}_var", const(f"{tag}_eps", 1e-5)], [f"{tag}_ve"]))
        nodes.append(helper.make_node("Sqrt", [f"{tag}_ve"], [f"{tag}_std"]))
        nodes.append(helper.make_node("Div", [f"{tag}_d", f"{tag}_std"], [f"{tag}_n"]))
        gamma = const(f"{tag}_gamma", RNG.uniform(0.5, 1.5, hidden))
        beta = const(f"{tag}_beta", randn(hidden, scale=0.1))
        nodes.append(helper.make_node("Mul", [f"{tag}_n", gamma], [f"{tag}_g"]))
        nodes.append(helper.make_node("Add", [f"{tag}_g", beta], [y]))

    def linear(x: str, y: str, n_in: int, n_out: int, tag: str) -> None:
        nodes.append(helper.make_node("MatMul", [x, const(f"{tag}_w", randn(n_in, n_out))], [f"{tag}_mm"]))
        nodes.append(helper.make_node("Add", [f"{tag}_mm", const(f"{tag}_b", randn(n_out, scale=0.1))], [y]))

    # attention with one head: softmax(q k^T / sqrt(d) + mask) v
    nodes.append(helper.make_node("Identity", ["x"], ["x_id"]))
    linear("x_id", "q", hidden, hidden, "q")
    linear("x_id", "k", hidden, hidden, "k")
    linear("x_id", "v", hidden, hidden, "v")
    nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]))
    nodes.append(helper.make_node("MatMul", ["q", "kt"], ["qk"]))
    nodes.append(helper.make_node("Div", ["qk", const("scale", np.sqrt(hidden))], ["qk_s"]))
    nodes.append(helper.make_node("Add", ["qk_s", "mask"], ["scores"]))
    reduce("ReduceMax", "scores", "peak", [-1])
    nodes.append(helper.make_node("Sub", ["scores", "peak"], ["shifted"]))
    nodes.append(helper.make_node("Exp", ["shifted"], ["e"]))
    reduce("ReduceSum", "e", "total", [-1])
    nodes.append(helper.make_node("Div", ["e", "total"], ["probs"]))
    nodes.append(helper.make_node("MatMul", ["probs", "v"], ["ctx"]))
    nodes.append(helper.make_node("Dropout", ["ctx"], ["ctx_d"]))
    nodes.append(helper.make_node("Add", ["x_id", "ctx_d"], ["res1"]))
    layer_norm("res1", "ln1", "ln1")
    # feed-forward: erf Gelu on a 2-D view (MatMul+Add -> Gemm), then tanh Gelu on 3-D
    shape_2d = "shape_2d"
    initializers.append(tensor(shape_2d, np.array([-1, hidden], np.int64)))
    initializers.append(tensor("shape_3d", np.array([-1, seq, hidden], np.int64)))
    nodes.append(helper.make_node("Reshape", ["ln1", shape_2d], ["flat"]))
    linear("flat", "h1", hidden, 2 * hidden, "ff1")
    nodes.append(helper.make_node("Div", ["h1", const("sqrt2", np.sqrt(2.0))], ["h1s"]))
    nodes.append(helper.make_node("Erf", ["h1s"], ["h1e"]))
    nodes.append(helper.make_node("Add", ["h1e", const("one", 1.0)], ["h1p"]))
    nodes.append(helper.make_node("Mul", ["h1", "h1p"], ["h1m"]))
    nodes.append(helper.make_node("Mul", ["h1m", const("half", 0.5)], ["gelu1"]))
    linear("gelu1", "h2", 2 * hidden, hidden, "ff2")
    nodes.append(helper.make_node("Reshape", ["h2", "shape_3d"], ["h2r"]))
    nodes.append(helper.make_node("Cast", ["h2r"], ["h2c"], to=FLOAT))
    nodes.append(helper.make_node("Pow", ["h2c", const("three", 3.0)], ["cube"]))
    nodes.append(helper.make_node("Mul", [const("c044", 0.044715), "cube"], ["cube_s"]))
    nodes.append(helper.make_node("Add", ["h2c", "cube_s"], ["inner"]))
    nodes.append(helper.make_node("Mul", ["inner", const("c079", np.sqrt(2 / np.pi))], ["inner_s"]))
    nodes.append(helper.make_node("Tanh", ["inner_s"], ["th"]))
    nodes.append(helper.make_node("Add", [const("one_b", 1.0), "th"], ["thp"]))
    nodes.append(helper.make_node("Mul", [const("half_b", 0.5), "h2c"], ["half_x"]))
    nodes.append(helper.make_node("Mul", ["half_x", "thp"], ["gelu2"]))
    nodes.append(helper.make_node("Add", ["ln1", "gelu2"], ["res2"]))
    layer_norm("res2", "y", "ln2")
    return make_model(
        nodes,
        [
            helper.make_tensor_value_info("x", FLOAT, [2, seq, hidden]),
            helper.make_tensor_value_info("mask", FLOAT, [2, 1, seq]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, [2, seq, hidden])],
        initializers,
        opset=opset,
        name="encoder",
    )


def transformer_feeds() -> dict[str, np.ndarray]:
    mask = np.zeros((2, 1, 5), np.float32)
    mask[1, 0, 3:] = -1e4
    return {"x": randn(2, 5, 8, scale=1.0), "mask": mask}


def constant_weights_model() -> onnx.ModelProto:
    """Weights built at run time from Constant/ConstantOfShape/Range chains, as model-zoo exports
    do, and a Reshape target computed from the Shape of a statically shaped input."""

    def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=tensor(name, array))

    nodes = [
        constant("shape", np.array([4, 6], np.int64)),
        helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=tensor("v", np.array([1.0], np.float32))),
        constant("start", np.array(0, np.int64)),
        constant("limit", np.array(24, np.int64)),
        constant("delta", np.array(1, np.int64)),
        helper.make_node("Range", ["start", "limit", "delta"], ["ramp_i"]),
        helper.make_node("Cast", ["ramp_i"], ["ramp"], to=FLOAT),
        helper.make_node("Reshape", ["ramp", "shape"], ["ramp2"]),
        constant("scale", np.array(0.05, np.float32)),
        helper.make_node("Mul", ["ramp2", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "ones"], ["w"]),
        helper.make_node("Transpose", ["w"], ["wt"]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        constant("zero", np.array(0, np.int64)),
        helper.make_node("Gather", ["x_shape", "zero"], ["batch"]),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        constant("rest", np.array([-1], np.int64)),
        helper.make_node("Concat", ["batch1", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["x2"]),
        helper.make_node("MatMul", ["x2", "wt"], ["y"]),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [3, 2, 3])],
        [helper.make_tensor_value_info("y", FLOAT, [3, 4])],
        [tensor("axes0", np.array([0], np.int64))],
        opset=17,
        name="built_weights",
    )


def noop_model() -> onnx.ModelProto:
    """No-op nodes of every kind the basic level removes, duplicates for CSE and constant sharing,
    an Identity producing a graph output and one passing a graph input straight to an output."""
    int64_max = np.iinfo(np.int64).max
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Cast", ["a"], ["b"], to=FLOAT),
        helper.make_node("Reshape", ["b", "same_shape"], ["c"]),
        helper.make_node("Transpose", ["c"], ["d"], perm=[0, 1, 2]),
        helper.make_node("Slice", ["d", "starts", "ends"], ["e"]),
        helper.make_node("Pad", ["e", "zero_pads"], ["f"]),
        helper.make_node("Expand", ["f", "ones_shape"], ["g"]),
        helper.make_node("Dropout", ["g"], ["h"]),
        helper.make_node("Mul", ["h", "two_a"], ["m1"]),
        helper.make_node("Mul", ["h", "two_b"], ["m2"]),
        helper.make_node("Relu", ["m1"], ["r1"]),
        helper.make_node("Relu", ["m2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("Identity", ["s"], ["y"]),
        helper.make_node("Identity", ["x"], ["x_copy"]),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 4])],
        [
            helper.make_tensor_value_info("y", FLOAT, ["N", 3, 4]),
            helper.make_tensor_value_info("x_copy", FLOAT, ["N", 3, 4]),
        ],
        [
            tensor("same_shape", np.array([0, 3, -1], np.int64)),
            tensor("starts", np.array([0, 0], np.int64)),
            tensor("ends", np.array([int64_max, 3], np.int64)),
            tensor("zero_pads", np.zeros(6, np.int64)),
            tensor("ones_shape", np.array([1, 4], np.int64)),
            tensor("two_a", np.array(2.0, np.float32)),
            tensor("two_b", np.array(2.0, np.float32)),
        ],
        opset=17,
        name="noops",
    )


def if_model() -> onnx.ModelProto:
    """An If whose branches compute from Constant chains and the outer input."""

    def branch(value: float, name: str) -> onnx.GraphProto:
        nodes = [
            helper.make_node("Constant", [], [f"{name}_c"], value=tensor(f"{name}_c", np.float32(value))),
            helper.make_node("Mul", [f"{name}_c", "k"], [f"{name}_ck"]),
            helper.make_node("Add", ["x", f"{name}_ck"], [f"{name}_out"]),
        ]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_out", FLOAT, [3])])

    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=branch(2.0, "then"), else_branch=branch(-1.0, "else"))]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []), helper.make_tensor_value_info("x", FLOAT, [3])],
        [helper.make_tensor_value_info("y", FLOAT, [3])],
        [tensor("k", np.float32(3.0))],
        opset=17,
        name="branches",
    )


# -- every level computes what level 0 computes --------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_cnn_matches_level0(level: int) -> None:
    model = cnn_model()
    feeds = {"x": randn(2, 3, 6, 6, scale=1.0)}
    want = run(model, feeds)
    got_model = optimized(model, level)
    assert_same(run(got_model, feeds), want)
    ops = op_types(got_model)
    if level == 2:
        assert "BatchNormalization" not in ops
        assert "Mul" not in ops and ops.count("Add") == 1  # the residual Add is not a constant bias
    if level == 99:
        assert ops.count("FusedConv") == 6 and "Conv" not in ops
        assert not {"Relu", "Clip", "HardSigmoid", "LeakyRelu", "Sigmoid", "Add"} & set(ops)


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("level", LEVELS)
def test_transformer_block_matches_level0(opset: int, level: int) -> None:
    model = transformer_model(opset)
    feeds = transformer_feeds()
    want = run(model, feeds)
    got_model = optimized(model, level)
    assert_same(run(got_model, feeds), want)
    nodes = list(got_model.graph)
    ops = [n.op_type for n in nodes]
    assert not {"Identity", "Dropout", "Cast"} & set(ops)
    if level >= 2:
        assert not {"ReduceMean", "Erf", "Tanh", "Exp", "Pow", "Sqrt"} & set(ops)
        domains = {n.op_type: n.domain for n in nodes}
        # at level 99 a Gelu after a biased product becomes that FusedGemm's activation
        in_gemms = [n for n in nodes if n.op_type == "FusedGemm" and "Gelu" in str(n.attributes.get("activation", ""))]
        assert ops.count("LayerNormalization") == 2 and ops.count("Gelu") + len(in_gemms) == 2
        assert ops.count("Softmax") == (1 if level == 2 else 0)
        assert domains["LayerNormalization"] == ("" if opset >= 17 else ONNXMUX_DOMAIN)
        assert domains.get("Gelu", "" if opset >= 20 else ONNXMUX_DOMAIN) == ("" if opset >= 20 else ONNXMUX_DOMAIN)
        assert "Gemm" in ops or "FusedGemm" in ops
    if level == 99:
        assert ops.count("FusedAttention") == 1 and "MatMul" not in ops


def test_constant_chains_fold_at_basic() -> None:
    model = constant_weights_model()
    feeds = {"x": randn(3, 2, 3, scale=1.0)}
    want = run(model, feeds)
    got_model = optimized(model, 1)
    assert_same(run(got_model, feeds), want)
    graph = got_model.graph
    assert op_types(got_model) == ["Reshape", "MatMul"]
    for node in graph:
        assert not all(is_constant(v) for v in node.inputs if v is not None), f"{node.op_type} left unfolded"
    assert not any(node.op_type in ("Constant", "ConstantOfShape") for node in graph)


def test_noops_duplicates_and_shared_constants_go_at_basic() -> None:
    model = noop_model()
    feeds = {"x": randn(2, 3, 4, scale=1.0)}
    want = run(model, feeds)
    got_model = optimized(model, 1)
    assert_same(run(got_model, feeds), want)
    graph = got_model.graph
    # One Mul, Relu and Add remain (CSE after the two factors were shared), plus the Identity
    # that passes the graph input to the graph output x_copy.
    assert sorted(op_types(got_model)) == ["Add", "Identity", "Mul", "Relu"]
    assert [v.name for v in graph.outputs] == ["y", "x_copy"]
    assert graph.outputs[0].producer().op_type == "Add"
    assert len(graph.initializers) == 1


def test_duplicates_merge_onto_the_first_node_with_equal_attributes() -> None:
    # Four nodes share op type and input; attributes pair the first with the last and the two
    # middle ones, so each later one merges onto its own earlier twin.
    axes = [1, 2, 2, 1]
    nodes = [helper.make_node("Softmax", ["x"], [f"r{i}"], axis=a) for i, a in enumerate(axes)]
    nodes += [helper.make_node("Mul", ["r0", "r1"], ["m0"]), helper.make_node("Mul", ["r2", "r3"], ["m1"])]
    nodes.append(helper.make_node("Sub", ["m0", "m1"], ["y"]))
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", FLOAT, [2, 3, 4])], [helper.make_tensor_value_info("y", FLOAT, [2, 3, 4])]
    )
    feeds = {"x": randn(2, 3, 4, scale=1.0)}
    want = run(model, feeds)
    got_model = optimized(model, 1)
    assert_same(run(got_model, feeds), want)
    softmaxes = [n for n in got_model.graph if n.op_type == "Softmax"]
    assert [n.outputs[0].name for n in softmaxes] == ["r0", "r1"]
    mul = [n for n in got_model.graph if n.op_type == "Mul"]
    assert [[v.name for v in n.inputs] for n in mul] == [["r0", "r1"], ["r1", "r0"]]


def test_graph_outputs_are_not_folded_into_shared_arrays() -> None:
    nodes = [
        helper.make_node("Constant", [], ["c"], value=tensor("c", np.array([1.0, 2.0], np.float32))),
        helper.make_node("Add", ["c", "c"], ["y"]),
        helper.make_node("Add", ["x", "c"], ["z"]),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [2])],
        [helper.make_tensor_value_info("y", FLOAT, [2]), helper.make_tensor_value_info("z", FLOAT, [2])],
    )
    got_model = optimized(model, 99)
    assert op_types(got_model) == ["Add", "Add"]
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxmux.InferenceSession(ir.to_proto(got_model).SerializeToString(), options)
    first = session.run(["y"], {"x": np.zeros(2, np.float32)})[0]
    first[:] = 0
    assert session.run(["y"], {"x": np.zeros(2, np.float32)})[0].tolist() == [2.0, 4.0]


def test_random_ops_are_never_folded_or_merged() -> None:
    nodes = [
        helper.make_node("RandomNormal", [], ["r1"], shape=[3]),
        helper.make_node("RandomNormal", [], ["r2"], shape=[3]),
        helper.make_node("Sub", ["r1", "r2"], ["y"]),
    ]
    model = make_model(nodes, [], [helper.make_tensor_value_info("y", FLOAT, [3])])
    got_model = optimized(model, 99)
    assert op_types(got_model) == ["RandomNormal", "RandomNormal", "Sub"]


@pytest.mark.parametrize("level", LEVELS)
def test_subgraphs_are_optimized_too(level: int) -> None:
    model = if_model()
    got_model = optimized(model, level)
    for branch in ("then_branch", "else_branch"):
        body = got_model.graph.node(0).attributes[branch].value
        assert [n.op_type for n in body] == ["Add"]
    if REGISTRY.lookup("", "If", 17) is None:
        pytest.skip("the CPU provider has no If kernel yet")
    for cond in (True, False):
        feeds = {"cond": np.array(cond), "x": randn(3)}
        assert_same(run(got_model, feeds), run(model, feeds))


# -- level 99: the CPU provider's fusions --------------------------------------------------


ACTIVATIONS = [
    ("Relu", [], {}),
    ("Sigmoid", [], {}),
    ("Tanh", [], {}),
    ("LeakyRelu", [], {"alpha": 0.3}),
    ("HardSigmoid", [], {"alpha": 0.25, "beta": 0.4}),
    ("Clip", ["lo", "hi"], {}),
]


@pytest.mark.parametrize("act, extra, attrs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_conv_and_gemm_activations_fuse(act: str, extra: list[str], attrs: dict) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(act, ["c", *extra], ["y"], **attrs),
        helper.make_node("Flatten", ["y"], ["f"]),
        helper.make_node("MatMul", ["f", "wm"], ["m"]),
        helper.make_node(act, ["m", *extra], ["z"], **attrs),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [2, 2, 3, 3])],
        [helper.make_tensor_value_info("z", FLOAT, [2, 4])],
        [
            tensor("w", randn(3, 2, 3, 3)),
            tensor("b", randn(3)),
            tensor("wm", randn(27, 4)),
            tensor("lo", np.float32(-0.2)),
            tensor("hi", np.float32(0.3)),
        ],
    )
    feeds = {"x": randn(2, 2, 3, 3, scale=2.0)}
    got_model = optimized(model, 99)
    assert op_types(got_model) == ["FusedConv", "Flatten", "FusedGemm"]
    assert_same(run(got_model, feeds), run(model, feeds))


def test_matmul_bias_activation_fuses_on_3d_inputs() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, ["B", 4, 6])],
        [helper.make_tensor_value_info("y", FLOAT, ["B", 4, 5])],
        [tensor("w", randn(6, 5)), tensor("b", randn(5))],
    )
    got_model = optimized(model, 99)
    assert op_types(got_model) == ["FusedGemm"]
    assert [v.name for v in got_model.graph.outputs] == ["y"]
    feeds = {"x": randn(3, 4, 6, scale=1.0)}
    assert_same(run(got_model, feeds), run(model, feeds))


def test_no_fusion_when_the_intermediate_is_read_elsewhere() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["y"]),
        helper.make_node("Conv", ["x", "w2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Neg", ["c2"], ["z"]),
        helper.make_node("Add", ["r2", "z"], ["s"]),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info(name, FLOAT, [1, 2, 3, 3]) for name in ("c", "y", "s")],
        [tensor("w", randn(2, 2, 1, 1)), tensor("w2", randn(2, 2, 1, 1))],
    )
    got_model = load(model).model
    nodes_after = fuse(got_model.graph, list(got_model.graph))
    assert [n.op_type for n in nodes_after] == ["Conv", "Relu", "Conv", "Relu", "Neg", "Add"]


def test_fuse_only_touches_the_nodes_it_is_given() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 2, 3, 3])],
        [tensor("w", randn(2, 2, 1, 1))],
    )
    graph = load(model).model.graph
    conv = graph.node(0)
    assert fuse(graph, [conv]) == [conv]
    assert [n.op_type for n in graph] == ["Conv", "Relu"]


# -- the rule API --------------------------------------------------------------------------


class DoubleNegation(PatternRule):
    """Neg(Neg(x)) -> x (a well-behaved user rule)."""

    name = "DoubleNegation"

    def match(self, node: ir.Node) -> Any | None:
        inner = node.inputs[0].producer() if node.op_type == "Neg" else None
        return inner if inner is not None and inner.op_type == "Neg" else None

    def rewrite(self, graph: ir.Graph, node: ir.Node, match: Any) -> None:
        node.outputs[0].replace_all_uses_with(match.inputs[0])


class RaisesMidway(Rule):
    """Removes a node, then fails."""

    name = "RaisesMidway"

    def apply(self, graph: ir.Graph) -> int:
        graph.remove(graph.node(0), safe=False)
        raise RuntimeError("oops")


class BreaksTheGraph(Rule):
    """Moves the first node to the end, so its readers read it before it is computed."""

    name = "BreaksTheGraph"

    def apply(self, graph: ir.Graph) -> int:
        first = graph.node(0)
        graph.remove(first, safe=False)
        graph.append(first)
        return 1


def negation_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Neg", ["x"], ["n1"]),
        helper.make_node("Neg", ["n1"], ["n2"]),
        helper.make_node("Relu", ["n2"], ["y"]),
    ]
    return make_model(
        nodes, [helper.make_tensor_value_info("x", FLOAT, [3])], [helper.make_tensor_value_info("y", FLOAT, [3])]
    )


def test_user_rule_is_applied_and_reported(caplog) -> None:
    model = load(negation_model()).model
    with caplog.at_level(logging.INFO, logger="onnxmux"):
        reports = optimize(model, 1, extra_rules=[DoubleNegation()])
    assert op_types(model) == ["Relu"]
    report = next(r for r in reports if r.name == "DoubleNegation")
    assert (report.level, report.rewrites, report.error) == ("user", 1, None)
    assert any("DoubleNegation" in r.message and "3 -> 3 nodes" in r.message for r in caplog.records)
    assert any("DeadCodeElimination" in r.message and "3 -> 1 nodes" in r.message for r in caplog.records)
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    assert_same(run(model, feeds), run(negation_model(), feeds))


@pytest.mark.parametrize("bad", [RaisesMidway(), BreaksTheGraph()], ids=lambda r: r.name)
def test_failing_user_rule_is_rolled_back_with_a_warning(bad: Rule, caplog) -> None:
    model = load(negation_model()).model
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        reports = optimize(model, 0, extra_rules=[bad, DoubleNegation()])
    warnings_ = [r for r in caplog.records if r.name == "onnxmux" and r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and bad.name in warnings_[0].message
    failed = next(r for r in reports if r.name == bad.name)
    assert failed.error and failed.rewrites == 0
    # The session goes on without it; the next rule still ran on the intact graph.
    assert op_types(model) == ["Relu"]
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    assert_same(run(model, feeds), run(negation_model(), feeds))


def test_disabled_rules_are_skipped(caplog) -> None:
    model = cnn_model()
    kept = optimized(model, 2, disabled={"FuseConvBatchNorm"})
    assert op_types(kept).count("BatchNormalization") == 2
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        optimize(load(model).model, 2, disabled={"NoSuchRule"})
    assert any("NoSuchRule" in r.message for r in caplog.records)


def test_builtin_rule_names_are_unique() -> None:
    names = [cls.name for _, cls in BUILTIN_RULES]
    assert len(names) == len(set(names)) and all(names)


def test_level0_changes_nothing() -> None:
    model = load(noop_model()).model
    before = op_types(model)
    assert optimize(model, 0) == []
    assert op_types(model) == before


# -- saving --------------------------------------------------------------------------------


SAVED_CASES = [
    (cnn_model, lambda: {"x": randn(2, 3, 6, 6)}),
    (lambda: transformer_model(13), transformer_feeds),
]


@pytest.mark.parametrize("make, feeds", SAVED_CASES, ids=["cnn", "encoder-opset13"])
def test_saved_optimized_model_is_valid_onnx(make, feeds, tmp_path) -> None:
    model = make()
    got_model = optimized(model, 99)
    path = tmp_path / "optimized.onnx"
    save_optimized(got_model, str(path))
    onnx.checker.check_model(str(path))
    saved = onnx.load(str(path))
    assert {o.domain: o.version for o in saved.opset_import}.get(ONNXMUX_DOMAIN) == 1
    inputs = feeds()
    assert_same(run(saved, inputs), run(model, inputs))


# -- ONNX's node tests at every level, through the session API --------------------------------


def _session_outputs(model: onnx.ModelProto, feeds: dict, level: int) -> list[Any]:
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel(level)
    return onnxmux.InferenceSession(model.SerializeToString(), options).run(None, feeds)


@pytest.fixture(scope="module")
def level0_outputs() -> dict[str, tuple[dict, list[Any]]]:
    """Feeds and level-0 outputs of every deterministic node test that runs at level 0."""
    found = {}
    for case in node_cases():
        if "training_dropout" in case.name or any(n.op_type in RANDOM_OPS for n in case.model.graph.node):
            continue  # random outputs: two sessions differ at any level
        initializers = {t.name for t in case.model.graph.initializer}
        names = [i.name for i in case.model.graph.input if i.name not in initializers]
        inputs, _ = case.data_sets[0]
        feeds = {n: to_value(v) for n, v in zip(names, inputs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found[case.name] = (feeds, _session_outputs(case.model, feeds, 0))
            except Exception:  # not runnable at level 0 either: the kernels' concern, not the optimizer's
                continue
    return found


@pytest.mark.parametrize("level", LEVELS)
def test_node_suite_at_every_level_matches_level0(level: int, level0_outputs) -> None:
    """Every node test that runs at level 0 gives the same outputs at ``level``."""
    cases = {c.name: c for c in node_cases()}
    mismatches = []
    for name, (feeds, want) in level0_outputs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                got = _session_outputs(cases[name].model, feeds, level)
            except Exception as exc:
                mismatches.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
        problem = first_mismatch([str(i) for i in range(len(want))], got, want, RTOL, ATOL)
        if problem:
            mismatches.append(f"{name}: {problem}")
    assert len(level0_outputs) > 1800
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    "make",
    [
        cnn_model,
        lambda: transformer_model(13),
        lambda: transformer_model(20),
        constant_weights_model,
        noop_model,
        if_model,
    ],
    ids=["cnn", "encoder13", "encoder20", "built_weights", "noops", "if"],
)
def test_snapshot_restores_the_graph_exactly(make) -> None:
    """The rollback of built-in rules undoes everything every built-in rule does."""
    model = load(make()).model
    before = ir.to_proto(model).graph.SerializeToString()
    saved = Snapshot(model.graph)
    optimize(model, 2)
    assert ir.to_proto(model).graph.SerializeToString() != before
    saved.restore()
    assert ir.to_proto(model).graph.SerializeToString() == before
    assert not graph_problems(model.graph)


def test_failing_builtin_rule_is_rolled_back_and_the_rest_still_run(monkeypatch, caplog) -> None:
    from onnxmux.core.optimizer.extended import FuseConvBatchNorm

    real_apply = FuseConvBatchNorm.apply

    def apply_then_fail(self, graph):
        real_apply(self, graph)  # rewrites the graph, then fails: everything must be undone
        raise RuntimeError("bug in a built-in rule")

    monkeypatch.setattr(FuseConvBatchNorm, "apply", apply_then_fail)
    model = cnn_model()
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        got_model = load(model).model
        reports = optimize(got_model, 2)
    assert any("FuseConvBatchNorm" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    assert next(r for r in reports if r.name == "FuseConvBatchNorm").error
    ops = op_types(got_model)
    assert ops.count("BatchNormalization") == 2 and "Mul" not in ops  # FuseConvMul still ran
    feeds = {"x": randn(2, 3, 6, 6)}
    assert_same(run(got_model, feeds), run(model, feeds))


def test_builtin_rule_leaving_an_invalid_graph_is_the_one_blamed(monkeypatch, caplog) -> None:
    """The graph is checked once after the rounds; a break found there is traced to its rule."""
    from onnxmux.core.optimizer.extended import FuseConvBatchNorm

    real_apply = FuseConvBatchNorm.apply

    def apply_then_break(self, graph):
        count = real_apply(self, graph)
        first = next(iter(graph))
        graph.remove(first, safe=False)  # its readers now read a value nothing defines
        return count + 1

    monkeypatch.setattr(FuseConvBatchNorm, "apply", apply_then_break)
    model = cnn_model()
    got_model = load(model).model
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        reports = optimize(got_model, 2)
    failed = [r for r in reports if r.error]
    assert [r.name for r in failed] == ["FuseConvBatchNorm"] and "invalid graph" in failed[0].error
    assert not graph_problems(got_model.graph)
    feeds = {"x": randn(2, 3, 6, 6)}
    assert_same(run(got_model, feeds), run(model, feeds))
