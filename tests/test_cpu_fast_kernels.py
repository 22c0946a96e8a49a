"""The CPU provider's fast kernel paths against independent references: the float32 erf
approximation, in-place activations, depthwise and 1x1 convolutions without im2col, Conv+SiLU
fusion, and the recurrent layers' step loops."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.providers.cpu.ops import conv_direct, pointwise, pool, reduce
from onnxmux.providers.cpu.ops.conv import WindowAttrs, sliding_windows

RNG = np.random.default_rng(0)


def test_erf_approximation_error_over_a_dense_range() -> None:
    x = np.concatenate([np.linspace(-10, 10, 2_000_001), np.geomspace(1e-30, 5, 20_000)]).astype(np.float32)
    x = np.concatenate([x, -x[-20_000:]])
    exact = scipy.special.erf(x.astype(np.float64))
    approx = pointwise.erf_float32(np, x)
    assert approx.dtype == np.float32
    error = np.abs(approx - exact)
    assert error.max() <= 1.6e-7
    assert (error / np.maximum(np.abs(exact), 1e-38)).max() <= 1e-6


def test_erf_special_values() -> None:
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype=np.float32)
    y = pointwise.erf_float32(np, x)
    assert abs(y[0] - 1) <= 6e-8 and abs(y[1] + 1) <= 6e-8  # within one float32 step of ±1
    assert np.isnan(y[2]) and y[3] == 0 and y[4] == 0


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_its_formula(approximate) -> None:
    x = np.linspace(-8, 8, 10_001).astype(np.float32)
    x64 = x.astype(np.float64)
    if approximate == "none":
        expected = 0.5 * x64 * (1 + scipy.special.erf(x64 / np.sqrt(2)))
    else:
        expected = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3)))
    # In the negative tail 1 + erf cancels: the error there is |x|/2 times erf's (1.6e-7).
    np.testing.assert_allclose(pointwise.gelu(np, x, approximate), expected, rtol=1e-6, atol=7e-7)


def test_in_place_activations_match_their_formulas() -> None:
    x = np.concatenate([np.linspace(-30, 30, 1001), [-200.0, 200.0]]).astype(np.float32)
    x64 = x.astype(np.float64)
    sigmoid = 1 / (1 + np.exp(-x64))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(pointwise.sigmoid_inplace(np, x.copy()), sigmoid, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(pointwise.swish_inplace(np, x.copy()), x64 * sigmoid, rtol=1e-6, atol=1e-30)
    half = 1 / (1 + np.exp(-0.5 * x64))
    np.testing.assert_allclose(pointwise.swish_inplace(np, x.copy(), 0.5), x64 * half, rtol=1e-6, atol=1e-30)
    hard = x64 * np.clip(x64 / 6 + 0.5, 0, 1)
    np.testing.assert_allclose(pointwise.hard_swish_inplace(np, x.copy()), hard, rtol=1e-6, atol=1e-7)


def _depthwise_reference(x: np.ndarray, w: np.ndarray, layout) -> np.ndarray:
    """Every window times its channel's kernel, summed: (N, C, out..., kernel...) · (M, kernel...)."""
    windows = sliding_windows(np, x.astype(np.float64), layout)
    windows = np.repeat(windows, w.shape[0] // x.shape[1], axis=1)
    rank = len(layout.kernel)
    kernel = w[:, 0].astype(np.float64).reshape(w.shape[0], *(1,) * rank, *layout.kernel)
    return (windows * kernel).sum(axis=tuple(range(2 + rank, 2 + 2 * rank)))


DEPTHWISE_CASES = [
    # spatial, kernel, strides, dilations, pads, multiplier, batch
    ((9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1),
    ((12, 12), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2), 1, 2),
    ((10, 7), (3, 2), (2, 1), (2, 1), (0, 1, 2, 0), 2, 1),
    ((8, 9), (3, 3), (3, 2), (1, 2), (1, 0, 0, 1), 3, 2),
    ((17,), (4,), (2,), (1,), (1, 2), 1, 3),
    ((5, 6, 7), (3, 1, 2), (1, 2, 1), (1, 1, 2), (1, 0, 1, 1, 0, 0), 2, 1),
    ((3, 3), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, 1),
    ((4, 5), (2, 3), (3, 2), (1, 1), (3, 0, 4, 2), 1, 1),  # phases that lie wholly in the padding
]


@pytest.mark.parametrize("channels_last_up_to", [0, 1024])  # 0: channels first unless more channels than positions
@pytest.mark.parametrize("channels", [5, 64])
@pytest.mark.parametrize("spatial,kernel,strides,dilations,pads,multiplier,batch", DEPTHWISE_CASES)
def test_depthwise_conv_matches_windows_reference(
    monkeypatch, spatial, kernel, strides, dilations, pads, multiplier, batch, channels, channels_last_up_to
) -> None:
    monkeypatch.setattr(conv_direct, "_CHANNELS_LAST_UP_TO", channels_last_up_to)
    x = RNG.standard_normal((batch, channels, *spatial)).astype(np.float32)
    w = RNG.standard_normal((channels * multiplier, 1, *kernel)).astype(np.float32)
    layout = WindowAttrs(kernel, strides, dilations, pads, "NOTSET").layout(spatial, kernel)
    y = conv_direct.depthwise(np, x, w, layout)
    assert y.shape == (batch, channels * multiplier, *layout.out) and y.flags.c_contiguous
    np.testing.assert_allclose(y, _depthwise_reference(x, w, layout), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last_up_to", [0, 1024])
@pytest.mark.parametrize("spatial,kernel,strides,dilations,pads,multiplier,batch", DEPTHWISE_CASES[:4])
def test_depthwise_conv_bias_and_kept_weights(
    monkeypatch, spatial, kernel, strides, dilations, pads, multiplier, batch, channels_last_up_to
) -> None:
    """The bias added while copying out, and weights laid out once and reused from ``kept``:
    every run gives the reference, and the second run reads the kept layout."""
    monkeypatch.setattr(conv_direct, "_CHANNELS_LAST_UP_TO", channels_last_up_to)
    x = RNG.standard_normal((batch, 6, *spatial)).astype(np.float32)
    w = RNG.standard_normal((6 * multiplier, 1, *kernel)).astype(np.float32)
    b = RNG.standard_normal(6 * multiplier).astype(np.float32)
    layout = WindowAttrs(kernel, strides, dilations, pads, "NOTSET").layout(spatial, kernel)
    expected = _depthwise_reference(x, w, layout) + b.reshape(-1, *(1,) * len(spatial))
    kept: dict = {}
    for _ in range(2):
        y = conv_direct.depthwise(np, x, w, layout, b, kept)
        assert y.flags.c_contiguous
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert len(kept) == 1
    ((key, groups),) = kept.items()
    kept[key] = [np.zeros_like(g) for g in groups]  # a run must use the kept layout, not rebuild it
    np.testing.assert_allclose(conv_direct.depthwise(np, x, w, layout, b, kept), np.broadcast_to(b.reshape(-1, *(1,) * len(spatial)), expected.shape), atol=0)


def _max_pool_reference(x: np.ndarray, layout) -> np.ndarray:
    """The max over every window of the view padded with the dtype's lowest value."""
    low = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
    windows = sliding_windows(np, x, layout, low)
    rank = len(layout.kernel)
    return windows.max(axis=tuple(range(2 + rank, 2 + 2 * rank)))


MAX_POOL_CASES = [
    # spatial, kernel, strides, dilations, pads, ceil_mode
    ((112, 112), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False),
    ((9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), False),
    ((10, 7), (3, 2), (2, 1), (2, 1), (0, 1, 2, 0), False),
    ((8, 9), (4, 3), (3, 2), (1, 2), (1, 0, 0, 1), True),
    ((17,), (4,), (2,), (1,), (3, 2), True),
    ((5, 6, 7), (3, 1, 2), (1, 2, 1), (1, 1, 2), (1, 0, 1, 1, 0, 0), False),
    ((4, 4), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), False),
    ((6, 6), (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
@pytest.mark.parametrize("spatial,kernel,strides,dilations,pads,ceil_mode", MAX_POOL_CASES)
def test_separable_max_pool_matches_windows_reference(spatial, kernel, strides, dilations, pads, ceil_mode, dtype) -> None:
    x = (RNG.standard_normal((2, 3, *spatial)) * 50).astype(dtype)
    before = x.copy()
    layout = WindowAttrs(kernel, strides, dilations, pads, "NOTSET").layout(spatial, kernel, ceil_mode)
    y = pool._separable_max(np, x, layout)
    assert y.dtype == x.dtype and y.flags.c_contiguous and not np.shares_memory(y, x)
    np.testing.assert_array_equal(y, _max_pool_reference(x, layout))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("inner", [1, 350, 4096])  # each channel row alone, 3 rows, 40 rows per inner loop
@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_depthwise_conv_channels_last_repeated_rows(monkeypatch, inner, strides) -> None:
    """Channels last, einsum runs over several rows of channels at once: the rows added to make
    a whole number of them are cropped, whatever the repeat."""
    monkeypatch.setattr(conv_direct, "_INNER_ELEMENTS", inner)
    x = RNG.standard_normal((2, 100, 7, 6)).astype(np.float32)
    w = RNG.standard_normal((100, 1, 3, 3)).astype(np.float32)
    layout = WindowAttrs((3, 3), strides, None, (1, 1, 1, 1), "NOTSET").layout((7, 6), (3, 3))
    np.testing.assert_allclose(conv_direct.depthwise(np, x, w, layout), _depthwise_reference(x, w, layout), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (2, 3)])
def test_pointwise_conv_is_one_gemm(strides) -> None:
    x = RNG.standard_normal((2, 6, 7, 9)).astype(np.float32)
    w = RNG.standard_normal((4, 6, 1, 1)).astype(np.float32)
    layout = WindowAttrs((1, 1), strides, None, None, "NOTSET").layout((7, 9), (1, 1))
    sub = x[:, :, :: strides[0], :: strides[1]]
    expected = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0].astype(np.float64), sub.astype(np.float64))
    np.testing.assert_allclose(conv_direct.pointwise(np, x, w, layout), expected, rtol=1e-5, atol=1e-5)


def _conv_silu_model(group: int) -> bytes:
    w = RNG.standard_normal((4, 4 // group, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], group=group),
            helper.make_node("Sigmoid", ["c"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),
        ],
        "conv_silu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("group", [1, 4])
def test_conv_silu_fuses_into_one_node(group) -> None:
    model = _conv_silu_model(group)
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    fused = onnxmux.InferenceSession(model)
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = onnxmux.InferenceSession(model, options)
    assert [n["op_type"] for n in fused.get_execution_plan().to_dict()["nodes"]] == ["FusedConv"]
    np.testing.assert_allclose(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


def _recurrent_model(op_type: str, direction: str, layout: int, **attrs) -> bytes:
    """One recurrent node with seeded weights (the same for every call with the same op and direction)."""
    rng = np.random.default_rng(1)
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op_type]
    dirs = 2 if direction == "bidirectional" else 1
    hidden, size = 5, 3
    inits = [
        numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, size)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32) * 0.5, "R"),
        numpy_helper.from_array(rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32), "B"),
    ]
    outputs = ["Y", "Y_h"] + (["Y_c"] if op_type == "LSTM" else [])
    node = helper.make_node(
        op_type, ["X", "W", "R", "B", "lens"], outputs, direction=direction, hidden_size=hidden, layout=layout, **attrs
    )
    x_shape = ["s", "b", size] if layout == 0 else ["b", "s", size]
    graph = helper.make_graph(
        [node],
        "recurrent",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape),
            helper.make_tensor_value_info("lens", TensorProto.INT32, ["b"]),
        ],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


@pytest.mark.parametrize("op_type", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_recurrent_layers_match_onnxruntime(op_type, direction, layout) -> None:
    """onnxruntime runs only layout 0: batch-major runs are checked against it on transposed data."""
    import onnxruntime

    x = RNG.standard_normal((6, 3, 3)).astype(np.float32)
    lens = np.array([6, 2, 4], dtype=np.int32)
    reference = onnxruntime.InferenceSession(_recurrent_model(op_type, direction, 0), providers=["CPUExecutionProvider"])
    expected = reference.run(None, {"X": x, "lens": lens})
    if layout == 1:
        x = x.transpose(1, 0, 2)
        expected = [expected[0].transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in expected[1:]]
    actual = onnxmux.InferenceSession(_recurrent_model(op_type, direction, layout)).run(None, {"X": x, "lens": lens})
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_fused_step_equals_general_step(direction) -> None:
    """A clip too large to act sends LSTM through its general step: both steps must agree
    (full-length sequences, so that the default layer takes its fused step)."""
    feeds = {"X": RNG.standard_normal((7, 2, 3)).astype(np.float32), "lens": np.array([7, 7], dtype=np.int32)}
    fused = onnxmux.InferenceSession(_recurrent_model("LSTM", direction, 0)).run(None, feeds)
    general = onnxmux.InferenceSession(_recurrent_model("LSTM", direction, 0, clip=1e30)).run(None, feeds)
    for a, b in zip(fused, general):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axes", [((2, 5, 7, 3), (2, 3)), ((4, 6), (1,)), ((3, 4, 5), (0, 1, 2)), ((2, 3), ())])
@pytest.mark.parametrize("keepdims", [True, False])
def test_trailing_mean_matches_numpy(shape, axes, keepdims, dtype) -> None:
    """The ones-vector product that ReduceMean and GlobalAveragePool use over trailing axes."""
    x = RNG.standard_normal(shape).astype(dtype)
    first = axes[0] if axes else len(shape)
    y = reduce.trailing_mean(np, x, first, keepdims)
    expected = x.astype(np.float64).mean(axis=axes, keepdims=keepdims) if axes else x
    assert y.dtype == dtype and y.shape == expected.shape and not np.shares_memory(y, x)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_of_a_scalar_is_the_scalar(keepdims) -> None:
    """A 0-d input reduces over no axes: its mean is itself (the trailing-axes path must allow it)."""
    node = helper.make_node("ReduceMean", ["x"], ["y"], keepdims=keepdims)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    y = onnxmux.InferenceSession(model.SerializeToString()).run(None, {"x": np.array(3.5, np.float32)})[0]
    assert y.shape == () and y == np.float32(3.5)
