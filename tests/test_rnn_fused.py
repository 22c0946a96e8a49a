"""The recurrent layers' fused steps (``rnn_fused``) against onnxruntime and against the
general step: full-length and absent ``sequence_lens``, both layouts, GRU's two reset modes,
initial states, and weights fed at run time instead of packed once as initializers."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
HIDDEN, SIZE = 5, 3


def _weights(op_type: str, dirs: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    rows = GATES[op_type] * HIDDEN
    return {
        "W": rng.standard_normal((dirs, rows, SIZE)).astype(np.float32),
        "R": rng.standard_normal((dirs, rows, HIDDEN)).astype(np.float32) * 0.5,
        "B": rng.standard_normal((dirs, 2 * rows)).astype(np.float32),
    }


def _model(op_type: str, direction: str, layout: int, fed_weights: bool = False, **attrs) -> bytes:
    """One recurrent node reading X, W, R, B, lens and initial_h; W, R and B are initializers
    unless ``fed_weights``."""
    dirs = 2 if direction == "bidirectional" else 1
    weights = _weights(op_type, dirs)
    outputs = ["Y", "Y_h"] + (["Y_c"] if op_type == "LSTM" else [])
    node = helper.make_node(
        op_type, ["X", "W", "R", "B", "lens", "h0"], outputs, direction=direction, hidden_size=HIDDEN, layout=layout, **attrs
    )
    x_shape, h_shape = (["s", "b", SIZE], [dirs, "b", HIDDEN]) if layout == 0 else (["b", "s", SIZE], ["b", dirs, HIDDEN])
    inputs = [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape),
        helper.make_tensor_value_info("lens", TensorProto.INT32, ["b"]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, h_shape),
    ]
    if fed_weights:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(w.shape)) for n, w in weights.items()]
        inits = []
    else:
        inits = [numpy_helper.from_array(w, n) for n, w in weights.items()]
    graph = helper.make_graph(
        [node], "recurrent", inputs, [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


def _feeds(steps: int, batch: int, dirs: int, layout: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((steps, batch, SIZE)).astype(np.float32)
    h0 = rng.standard_normal((dirs, batch, HIDDEN)).astype(np.float32)
    if layout == 1:
        x, h0 = x.transpose(1, 0, 2), h0.transpose(1, 0, 2)
    return {"X": x, "lens": np.full(batch, steps, dtype=np.int32), "h0": h0}


CASES = [
    ("RNN", {}),
    ("GRU", {}),
    ("GRU", {"linear_before_reset": 1}),
    ("LSTM", {}),
]


@pytest.mark.parametrize("op_type, attrs", CASES)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_fused_steps_match_onnxruntime(op_type, attrs, direction) -> None:
    import onnxruntime

    dirs = 2 if direction == "bidirectional" else 1
    feeds = _feeds(6, 3, dirs, 0)
    expected = onnxruntime.InferenceSession(
        _model(op_type, direction, 0, **attrs), providers=["CPUExecutionProvider"]
    ).run(None, feeds)
    session = onnxmux.InferenceSession(_model(op_type, direction, 0, **attrs))
    for run in range(2):  # the second run reuses the weights packed by the first
        for a, e in zip(session.run(None, feeds), expected):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type, attrs", CASES)
@pytest.mark.parametrize("layout", [0, 1])
def test_fused_steps_equal_general_steps(op_type, attrs, layout) -> None:
    """A clip too large to act sends a layer through its general step; fed weights are packed per run."""
    feeds = _feeds(5, 2, 2, layout)
    fused = onnxmux.InferenceSession(_model(op_type, "bidirectional", layout, **attrs)).run(None, feeds)
    general = onnxmux.InferenceSession(_model(op_type, "bidirectional", layout, clip=1e30, **attrs)).run(None, feeds)
    fed = onnxmux.InferenceSession(_model(op_type, "bidirectional", layout, fed_weights=True, **attrs)).run(
        None, {**feeds, **_weights(op_type, 2)}
    )
    assert [a.shape for a in fused] == [b.shape for b in general]
    for a, b, c in zip(fused, general, fed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(a, c)


def test_fused_lstm_without_optional_inputs_or_steps() -> None:
    """No B, sequence_lens or initial states; then an empty sequence returns the zero initial state."""
    weights = _weights("LSTM", 1)
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y", "Y_h", "Y_c"], hidden_size=HIDDEN)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["s", 1, SIZE])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ["Y", "Y_h", "Y_c"]],
        [numpy_helper.from_array(weights[n], n) for n in ("W", "R")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()
    import onnxruntime

    x = np.random.default_rng(4).standard_normal((4, 1, SIZE)).astype(np.float32)
    expected = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    session = onnxmux.InferenceSession(model)
    for a, e in zip(session.run(None, {"X": x}), expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    y, y_h, y_c = session.run(None, {"X": x[:0]})
    assert y.shape == (0, 1, 1, HIDDEN)
    np.testing.assert_array_equal(y_h, np.zeros((1, 1, HIDDEN), np.float32))
    np.testing.assert_array_equal(y_c, np.zeros((1, 1, HIDDEN), np.float32))
