"""Large weights read around protobuf's parse (onnxmux/core/raw_weights.py) load as the plain parse would."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.core import raw_weights
from onnxmux.core.errors import InvalidGraph
from onnxmux.core.loader import load

ROWS = 640  # 640 x 512 float32: 1.25 MiB, over the size below which models are parsed as they are


def mlp(first: np.ndarray | None = None) -> onnx.ModelProto:
    """x @ W1 + b (W1 large, b small) -> Relu -> @ W2 (large, float16 cast to float)."""
    w1 = np.random.default_rng(0).standard_normal((8, ROWS * 64)).astype(np.float32) if first is None else first
    w2 = np.random.default_rng(1).standard_normal((ROWS * 64, 4)).astype(np.float16)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.ones(ROWS * 64, np.float32), "b"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.float32(0.5), "half")]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Cast", ["w2"], ["w2f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["r", "w2f"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def weights(source) -> dict[str, np.ndarray]:
    graph = load(source).model.graph
    return {name: value.const_value.numpy() for name, value in graph.initializers.items()}


def test_the_large_raw_data_leaves_the_parsed_bytes_and_nothing_else() -> None:
    model = mlp()
    data = model.SerializeToString()
    detached = raw_weights.detach(data)
    assert detached is not None and sorted(detached.names.values()) == ["b", "w1", "w2"]  # "half" is small
    parsed = onnx.ModelProto.FromString(detached.model)
    for index, tensor in enumerate(model.graph.initializer):
        if index in detached.spans:
            assert bytes(detached.raw(index, tensor.name)) == tensor.raw_data
            tensor.ClearField("raw_data")
    assert parsed.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("how", ["path", "bytes"])
def test_a_model_loads_the_same_weights_and_runs_the_same(tmp_path, how) -> None:
    model = mlp()
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    source = str(path) if how == "path" else model.SerializeToString()
    expected = weights(model)  # a ModelProto is parsed as it is
    got = weights(source)
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    for name in ("w1", "b", "w2"):  # read in place: aligned for the kernels, and never written
        assert got[name].ctypes.data % raw_weights.ALIGN == 0 and not got[name].flags.writeable
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    runs = [onnxmux.InferenceSession(s, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for s in (model, source)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_detached_weight_of_the_wrong_length_is_refused_as_before() -> None:
    model = mlp()
    w1 = model.graph.initializer[0]
    w1.raw_data = w1.raw_data[:-4]
    messages = []
    for source in (model, model.SerializeToString()):
        with pytest.raises(InvalidGraph) as error:
            load(source)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "'w1'" in messages[0] and "raw_data" in messages[0]


def test_add_initializer_replaces_a_detached_weight() -> None:
    model = mlp()
    data = model.SerializeToString()
    options = onnxmux.SessionOptions()
    zeros = np.zeros((8, ROWS * 64), np.float32)
    options.add_initializer("w1", onnxmux.OrtValue.ortvalue_from_numpy(zeros))
    session = onnxmux.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = np.ones((2, 8), np.float32)
    reference = onnxmux.InferenceSession(mlp(first=zeros), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0])


def test_bytes_it_does_not_expect_are_left_to_the_parse() -> None:
    data = mlp().SerializeToString()
    assert raw_weights.detach(data[: len(data) // 2]) is None  # truncated
    assert raw_weights.detach(data + data) is None  # every field twice: protobuf merges the two graphs
    twice = mlp()
    twice.graph.initializer.append(twice.graph.initializer[0])
    assert raw_weights.detach(twice.SerializeToString()) is None
    small = mlp(first=np.ones((8, 4), np.float32))
    small.graph.ClearField("initializer")
    assert raw_weights.detach(small.SerializeToString()) is None
