"""The CPU kernels' fast paths for transformer layers against float64 references: attention
(unshifted exp, its fallbacks and the per-head slices), Gelu in chunks, and layer/RMS norm
computed by rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.providers.cpu.ops import fused, pointwise

RNG = np.random.default_rng(7)


def reference_attention(q, kt, v, scale, mask=None):
    scores = scale * (q.astype(np.float64) @ kt.astype(np.float64))
    if mask is not None:
        scores = scores + mask
    scores -= scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def qkv(lead: tuple[int, ...], n: int, d: int, scale: float = 1.0):
    return [(RNG.standard_normal(lead + shape) * scale).astype(np.float32) for shape in ((n, d), (d, n), (n, d))]


@pytest.mark.parametrize(
    "lead, n, q_scale, mask_shape",
    [
        ((1, 4), 16, 1.0, (1, 1, 1, 16)),  # unshifted exp, mask over keys
        ((2, 3), 9, 40.0, (2, 1, 9, 9)),  # scores above the unshifted limit: shifted by row maxima
        ((1, 6), 300, 1.0, (1, 1, 1, 300)),  # over the slice threshold: one head at a time
        ((2, 1), 5, 1.0, (2, 3, 5, 5)),  # the mask broadcasts the scores larger
    ],
)
def test_attention_matches_the_reference(lead, n, q_scale, mask_shape) -> None:
    q, kt, v = qkv(lead, n, 8, q_scale)
    mask = np.where(RNG.random(mask_shape) < 0.2, -1e9, 0).astype(np.float32)
    got = fused.attend(np, q, kt, v, 0.35, mask)
    want = reference_attention(q, kt, v, 0.35, mask)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_attention_row_with_every_key_masked_is_uniform() -> None:
    q, kt, v = qkv((1, 2), 6, 4)
    mask = np.zeros((1, 1, 6, 6), np.float32)
    mask[..., 2, :] = -1e9  # row sums of unshifted exps underflow: the shifted path takes over
    got = fused.attend(np, q, kt, v, 1.0, mask)
    want = reference_attention(q, kt, v, 1.0)
    np.testing.assert_allclose(np.delete(got, 2, axis=-2), np.delete(want, 2, axis=-2), rtol=1e-4, atol=1e-5)
    # In float32 every score of that row rounds to -1e9: all keys weigh the same.
    np.testing.assert_allclose(got[..., 2, :], v.mean(axis=-2), rtol=1e-5, atol=1e-6)


def test_attention_in_float16_returns_float16() -> None:
    q, kt, v = (a.astype(np.float16) for a in qkv((1, 2), 7, 4))
    got = fused.attend(np, q, kt, v, 0.5)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, reference_attention(q, kt, v, 0.5), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_over_several_chunks_of_a_strided_input(approximate) -> None:
    x = (RNG.standard_normal((3, 2 * pointwise.GELU_CHUNK + 11)) * 4).astype(np.float32)
    x[:, :8] = [-1e4, -100, -9, -5.7, 5.7, 9, 100, 1e4]  # the tails, where tanh saturates
    x = x[:, ::2]
    x64 = x.astype(np.float64)
    if approximate == "none":
        want = 0.5 * x64 * (1 + scipy.special.erf(x64 / np.sqrt(2)))
    else:
        want = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3)))
    got = pointwise.gelu(np, x, approximate)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6)


def norm_session(op_type: str, shape: list[int], axis: int) -> tuple[onnxmux.InferenceSession, list]:
    """A session of one normalization node (opset 23) and its scale [and bias] initializers."""
    normalized = shape[axis:]
    params = ["scale", "bias"][: 2 if op_type == "LayerNormalization" else 1]
    node = helper.make_node(op_type, ["x", *params], ["y"], axis=axis, epsilon=1e-5)
    inits = [numpy_helper.from_array(RNG.standard_normal(normalized).astype(np.float32), p) for p in params]
    graph = helper.make_graph(
        [node], "norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    return onnxmux.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]), inits


@pytest.mark.parametrize("op_type", ["LayerNormalization", "RMSNormalization"])
@pytest.mark.parametrize("shape, axis", [([2, 7, 33], -1), ([2, 3, 4, 5], 1)])
def test_norms_by_rows_match_their_formulas(op_type, shape, axis) -> None:
    session, inits = norm_session(op_type, shape, axis)
    x = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    axes = tuple(range(axis % len(shape), len(shape)))
    x64 = x.astype(np.float64)
    scale = numpy_helper.to_array(inits[0])
    if op_type == "LayerNormalization":
        bias = numpy_helper.to_array(inits[1])
        centered = x64 - x64.mean(axis=axes, keepdims=True)
        want = centered / np.sqrt((centered**2).mean(axis=axes, keepdims=True) + 1e-5) * scale + bias
    else:
        want = x64 / np.sqrt((x64**2).mean(axis=axes, keepdims=True) + 1e-5) * scale
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("width", [1000, pointwise.GELU_CHUNK + 3])  # chunks of whole rows; a row over a chunk
def test_gelu_with_its_bias_in_the_chunks_is_gelu_of_the_sum(approximate, width) -> None:
    x = (RNG.standard_normal((2 * pointwise.GELU_CHUNK // width + 3, width)) * 3).astype(np.float32)
    bias = RNG.standard_normal(width).astype(np.float32)
    want = pointwise.gelu(np, x + bias, approximate)
    got = pointwise.gelu_inplace(np, x, approximate, bias)
    assert got is x and got.tobytes() == want.tobytes()


def test_fused_gemm_with_gelu_takes_any_bias_shape() -> None:
    a, b = RNG.standard_normal((3, 7, 5)).astype(np.float32), RNG.standard_normal((5, 4)).astype(np.float32)
    for bias in (RNG.standard_normal(4), RNG.standard_normal((7, 4)), RNG.standard_normal((3, 1, 4))):
        bias = bias.astype(np.float32)
        node = helper.make_node("FusedGemm", ["a", "b", "c"], ["y"], domain="com.onnxmux", activation="Gelu")
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abc"],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.onnxmux", 1)])
        session = onnxmux.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        z = a.astype(np.float64) @ b + bias
        want = 0.5 * z * (1 + scipy.special.erf(z / np.sqrt(2)))
        np.testing.assert_allclose(session.run(None, {"a": a, "b": b, "c": bias})[0], want, rtol=1e-5, atol=1e-5)


def test_attention_with_an_all_zero_mask_matches_no_mask() -> None:
    q, kt, v = qkv((2, 3), 10, 8)
    got = fused.attend(np, q, kt, v, 0.35, np.zeros((2, 1, 1, 10), np.float32))
    assert got.tobytes() == fused.attend(np, q, kt, v, 0.35).tobytes()
    grown = fused.attend(np, q, kt, v, 0.35, np.zeros((4, 2, 3, 10, 10), np.float32))  # broadcasts the scores larger
    assert grown.shape == (4, 2, 3, 10, 8)
    np.testing.assert_allclose(grown, np.broadcast_to(reference_attention(q, kt, v, 0.35), grown.shape), rtol=1e-4, atol=1e-5)
