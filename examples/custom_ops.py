"""Custom operators in Python: a numeric op registered globally, a string op for one session.

Run: python examples/custom_ops.py
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import onnxmux


@onnxmux.custom_op(
    "com.example",
    "Swish",
    inputs=["X: T"],
    outputs=["Y: T"],
    type_constraints={"T": ["float", "double"]},
    attributes={"beta": 1.0},
    shape=lambda x, beta: x,  # the output has the input's shape
    pure=True,  # constant folding may evaluate it
)
def swish(x: np.ndarray, beta: float) -> np.ndarray:
    """x * sigmoid(beta * x)."""
    return (x / (1 + np.exp(-beta * x))).astype(x.dtype)


def join_words(words: np.ndarray, separator: str) -> np.ndarray:
    """Join the strings of the last axis with ``separator``."""
    flat = words.reshape(-1, words.shape[-1])
    joined = [separator.join(row) for row in flat.tolist()]
    return np.array(joined, dtype=object).reshape(words.shape[:-1])


JOIN_WORDS = onnxmux.CustomOp(
    "com.example",
    "JoinWords",
    join_words,
    inputs=["X: tensor(string)"],
    outputs=["Y: tensor(string)"],
    attributes={"separator": " "},
    shape=lambda x, separator: None if x is None else x[:-1],
)


def build_model() -> bytes:
    """x -> Swish(beta=2) -> Mul by 3 -> y;  words -> JoinWords(separator="-") -> sentence."""
    three = helper.make_tensor("three", TensorProto.FLOAT, [], [3.0])
    graph = helper.make_graph(
        [
            helper.make_node("Swish", ["x"], ["s"], name="swish", domain="com.example", beta=2.0),
            helper.make_node("Mul", ["s", "three"], ["y"], name="scale"),
            helper.make_node("JoinWords", ["words"], ["sentence"], name="join", domain="com.example", separator="-"),
        ],
        "custom_ops_example",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("words", TensorProto.STRING, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("sentence", TensorProto.STRING, None),
        ],
        [three],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def main() -> None:
    options = onnxmux.SessionOptions()
    options.register_custom_ops(JOIN_WORDS)  # this session only; Swish is registered globally
    session = onnxmux.InferenceSession(build_model(), options)
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    words = np.array([["custom", "ops", "work"], ["in", "python", "too"]], dtype=object)
    y, sentence = session.run(None, {"x": x, "words": words})
    for out in session.get_outputs():
        print(f"{out.name}: {out.type} {out.shape}")
    print("y =", np.round(y.astype(np.float64), 4).tolist())
    print("sentence =", sentence.tolist())
    assert np.allclose(y, 3 * swish(x, 2.0), atol=1e-6)
    assert sentence.tolist() == ["custom-ops-work", "in-python-too"]


if __name__ == "__main__":
    main()
