"""Transformer patterns of older exports: the RMS norm fusion, attention whose mask broadcasts
the scores, and Gelu fused into the product (or convolution) before it. Each fused model is
compared with the same model run unoptimized."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxmux.core.optimizer.editing import ONNXMUX_DOMAIN
from tests.test_optimizer import assert_same, make_model, optimized, randn, run, tensor

FLOAT = TensorProto.FLOAT


def rms_model(inverse: str, square: str, gamma: bool, opset: int, axes: tuple[int, ...] = (-1,)) -> object:
    """``x / sqrt(mean(x²) + eps) [* gamma]`` as exporters write it, over ``axes`` of a [2, 5, 8] input."""
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"]) if square == "pow" else helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"] if opset >= 18 else ["sq"], ["mean"], keepdims=1,
                         **({} if opset >= 18 else {"axes": list(axes)})),
        helper.make_node("Add", ["eps", "mean"], ["var"]),
        helper.make_node("Sqrt", ["var"], ["root"]),
    ]
    if inverse == "reciprocal":
        nodes += [helper.make_node("Reciprocal", ["root"], ["inv"]), helper.make_node("Mul", ["x", "inv"], ["normed"])]
    elif inverse == "one_over":
        nodes += [helper.make_node("Div", ["one", "root"], ["inv"]), helper.make_node("Mul", ["inv", "x"], ["normed"])]
    else:
        nodes += [helper.make_node("Div", ["x", "root"], ["normed"])]
    out = "normed"
    if gamma:
        nodes.append(helper.make_node("Mul", ["gamma", "normed"], ["y"]))
        out = "y"
    # A residual reader of x: x itself may have other readers.
    nodes.append(helper.make_node("Add", [out, "x"], ["z"]))
    initializers = [
        tensor("two", np.float32(2)), tensor("eps", np.float32(1e-6)), tensor("one", np.float32(1)),
        tensor("gamma", randn(*((5, 8) if len(axes) == 2 else (8,)), scale=1.0)),
        tensor("axes", np.array(axes, np.int64)),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [2, 5, 8])],
        [helper.make_tensor_value_info("z", FLOAT, [2, 5, 8])],
        initializers,
        opset=opset,
    )


@pytest.mark.parametrize("inverse", ["reciprocal", "one_over", "divide"])
@pytest.mark.parametrize("square", ["pow", "mul"])
def test_rms_norm_fuses_and_matches(inverse: str, square: str) -> None:
    for opset, gamma in ((17, True), (23, False)):
        model = rms_model(inverse, square, gamma, opset)
        feeds = {"x": randn(2, 5, 8, scale=2.0)}
        fused = optimized(model, 2)
        assert_same(run(fused, feeds), run(model, feeds))
        nodes = [n for n in fused.graph if n.op_type == "RMSNormalization"]
        assert len(nodes) == 1 and [n.op_type for n in fused.graph] == ["RMSNormalization", "Add"]
        assert nodes[0].domain == ("" if opset >= 23 else ONNXMUX_DOMAIN)


def test_rms_norm_over_two_trailing_axes_fuses() -> None:
    model = rms_model("reciprocal", "pow", True, 18, axes=(1, 2))
    feeds = {"x": randn(2, 5, 8, scale=2.0)}
    fused = optimized(model, 2)
    assert_same(run(fused, feeds), run(model, feeds))
    node = next(n for n in fused.graph if n.op_type == "RMSNormalization")
    assert node.attributes["axis"].value == -2


def test_rms_norm_over_a_leading_axis_is_left_alone() -> None:
    model = rms_model("reciprocal", "pow", False, 18, axes=(1,))
    fused = optimized(model, 2)
    assert "RMSNormalization" not in [n.op_type for n in fused.graph]
    feeds = {"x": randn(2, 5, 8, scale=2.0)}
    assert_same(run(fused, feeds), run(model, feeds))


def attention_model(mask_shape: list) -> object:
    """softmax(Q Kᵀ / 8 + mask) V with Q, K, V [1, 2, 6, 4] and the given (symbolic) mask shape."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Div", ["scores", "eight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["y"]),
    ]
    qkv = [helper.make_tensor_value_info(name, FLOAT, [1, 2, "s", 4]) for name in ("q", "k", "v")]
    return make_model(
        nodes,
        qkv + [helper.make_tensor_value_info("mask", FLOAT, mask_shape)],
        [helper.make_tensor_value_info("y", FLOAT, ["n", 2, "s", 4])],
        [tensor("eight", np.float32(8))],
    )


@pytest.mark.parametrize("mask", [(1, 1, 1, 6), (3, 1, 6, 6)], ids=["keys", "grows-batch"])
def test_attention_fuses_when_the_mask_shape_is_not_the_scores(mask: tuple[int, ...]) -> None:
    model = attention_model(["b", 1, "t", "u"])
    values = randn(*mask, scale=1.0)
    values[..., 1] = -1e9  # a masked key
    feeds = {"q": randn(1, 2, 6, 4, scale=2.0), "k": randn(1, 2, 6, 4, scale=2.0), "v": randn(1, 2, 6, 4), "mask": values}
    fused = optimized(model, 99)
    assert [n.op_type for n in fused.graph] == ["Transpose", "FusedAttention"]
    got, want = run(fused, feeds), run(model, feeds)
    assert got[0].shape == want[0].shape == np.broadcast_shapes((1, 2, 6, 4), mask[:-1] + (4,))
    assert_same(got, want)


def view_model(source: str) -> object:
    """``y.view(b, s, 2, 4)`` of y = x @ W, its b and s read from ``source``'s runtime shape (opset 13)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Shape", [source], ["shape"])]
    for i in (0, 1):
        nodes += [
            helper.make_node("Gather", ["shape", f"i{i}"], [f"d{i}"], axis=0),
            helper.make_node("Unsqueeze", [f"d{i}", "zero"], [f"u{i}"]),
        ]
    nodes += [
        helper.make_node("Concat", ["u0", "u1", "heads"], ["target"], axis=0),
        helper.make_node("Reshape", ["y", "target"], ["z"]),
    ]
    initializers = [
        tensor("w", randn(8, 8)), tensor("i0", np.int64(0)), tensor("i1", np.int64(1)),
        tensor("zero", np.array([0], np.int64)), tensor("heads", np.array([2, 4], np.int64)),
    ]
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["b", "s", 8]), helper.make_tensor_value_info("other", FLOAT, ["c", "s", 8])]
    outputs = [helper.make_tensor_value_info("z", FLOAT, ["n0", "n1", "n2", "n3"])]
    return make_model(nodes, inputs, outputs, initializers, opset=13)


def test_reshape_target_from_the_same_dims_becomes_constant() -> None:
    model = view_model("x")
    feeds = {"x": randn(3, 5, 8), "other": randn(3, 5, 8)}
    fused = optimized(model, 2)
    assert [n.op_type for n in fused.graph] == ["MatMul", "Reshape"]
    target = next(n for n in fused.graph if n.op_type == "Reshape").inputs[1].const_value.numpy()
    assert target.tolist() == [0, 0, 2, 4]
    got, want = run(fused, feeds), run(model, feeds)
    assert got[0].shape == (3, 5, 2, 4)
    assert_same(got, want)


def test_reshape_target_from_another_tensors_dims_is_kept() -> None:
    model = view_model("other")  # its first dimension "c" is not known to equal y's "b"
    fused = optimized(model, 2)
    assert "Shape" in [n.op_type for n in fused.graph]
    feeds = {"x": randn(3, 5, 8), "other": randn(3, 5, 8)}
    assert_same(run(fused, feeds), run(model, feeds))


def test_attention_drops_a_constant_zero_mask() -> None:
    # legacy (TorchScript) exports add a constant [0.] to unmasked scores: the fused node has no mask
    model = attention_model([1])
    model.graph.input.pop()
    model.graph.initializer.append(tensor("mask", np.zeros(1, np.float32)))
    feeds = {"q": randn(1, 2, 6, 4, scale=2.0), "k": randn(1, 2, 6, 4, scale=2.0), "v": randn(1, 2, 6, 4)}
    fused = optimized(model, 99)
    node = next(n for n in fused.graph if n.op_type == "FusedAttention")
    assert [n.op_type for n in fused.graph] == ["Transpose", "FusedAttention"] and len(node.inputs) == 3
    assert_same(run(fused, feeds), run(model, feeds))


def biased_gelu_model(approximate: str, bias_shape: tuple[int, ...]) -> object:
    """Gelu(x @ W + b) with ONNX's Gelu (opset 20), x [2, 5, 6] and W [6, 10]."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["biased"]),
        helper.make_node("Gelu", ["biased"], ["y"], approximate=approximate),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [2, 5, 6])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 5, 10])],
        [tensor("w", randn(6, 10, scale=1.0)), tensor("b", randn(*bias_shape, scale=1.0))],
        opset=20,
    )


@pytest.mark.parametrize("approximate, activation", [("none", "Gelu"), ("tanh", "FastGelu")])
@pytest.mark.parametrize("bias_shape", [(10,), (1, 10), (5, 10)], ids=["row", "row-2d", "per-position"])
def test_biased_product_and_gelu_fuse_into_one_gemm(approximate: str, activation: str, bias_shape: tuple) -> None:
    import onnxruntime

    model = biased_gelu_model(approximate, bias_shape)
    feeds = {"x": randn(2, 5, 6, scale=2.0)}
    fused = optimized(model, 99)
    assert [n.op_type for n in fused.graph] == ["FusedGemm"]
    assert fused.graph.node(0).attributes["activation"].value == activation
    got = run(fused, feeds)
    assert_same(got, run(model, feeds))
    reference = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got[0], reference.run(None, feeds)[0], rtol=1e-5, atol=1e-5)


def test_conv_and_gelu_fuse_into_one_conv() -> None:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Gelu", ["c"], ["y"])]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 4, 6, 6])],
        [tensor("w", randn(4, 3, 3, 3, scale=1.0)), tensor("b", randn(4, scale=1.0))],
        opset=20,
    )
    fused = optimized(model, 99)
    assert [n.op_type for n in fused.graph] == ["FusedConv"]
    assert fused.graph.node(0).attributes["activation"].value == "Gelu"
    feeds = {"x": randn(1, 3, 6, 6, scale=2.0)}
    assert_same(run(fused, feeds), run(model, feeds))
