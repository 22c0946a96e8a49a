"""Load-time validation as strict as onnxruntime's: attributes against the schema, tensors against
their dims and data type, inferred types against declared ones; unsorted nodes are sorted."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux as ort

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
FEED = {"x": np.array([-1.0, 2.0], np.float32)}


def _model(nodes, inits=(), outputs=(Y,), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [X], list(outputs), list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _add_const(tensor: TensorProto) -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["x", "c"], ["y"], name="add")], [tensor])


def _duplicate_attribute() -> onnx.ModelProto:
    node = helper.make_node("LeakyRelu", ["x"], ["y"], name="leaky", alpha=0.5)
    node.attribute.append(helper.make_attribute("alpha", 0.1))
    return _model([node])


def _raw(dtype: int, dims: list[int], **fields) -> TensorProto:
    tensor = TensorProto(name="c", data_type=dtype, dims=dims)
    for key, values in fields.items():
        if key == "raw_data":
            tensor.raw_data = values
        else:
            getattr(tensor, key).extend(values)
    return tensor


def _rnn(hidden_size: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2])
    w = numpy_helper.from_array(np.ones((1, 4, 2), np.float32), "w")
    r = numpy_helper.from_array(np.ones((1, 4, 4), np.float32), "r")
    node = helper.make_node("RNN", ["x", "w", "r"], ["", "y"], name="rnn", hidden_size=hidden_size)
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


CASES = {
    "duplicate attribute": (_duplicate_attribute, r"node 'leaky'.*attribute 'alpha' is given twice"),
    "string for a float": (
        lambda: _model([helper.make_node("LeakyRelu", ["x"], ["y"], name="leaky", alpha="s")]),
        r"node 'leaky'.*attribute 'alpha' is a STRING; the schema wants FLOAT",
    ),
    "string for ints": (
        lambda: _model([helper.make_node("Transpose", ["x"], ["y"], name="tr", perm="0")]),
        r"node 'tr'.*attribute 'perm' is a STRING; the schema wants INTS",
    ),
    "unknown attribute": (
        lambda: _model([helper.make_node("Relu", ["x"], ["y"], name="relu", foo=1)]),
        r"node 'relu'.*attribute 'foo' is not an attribute of Relu",
    ),
    "too many inputs": (
        lambda: _model([helper.make_node("Relu", ["x", "x"], ["y"], name="relu")]),
        r"node 'relu'.*has 2 inputs; Relu-14 takes 1",
    ),
    "dims without data": (lambda: _add_const(_raw(TensorProto.FLOAT, [2])), r"initializer 'c'.*2 elements.*holds 0"),
    "negative dims": (lambda: _add_const(_raw(TensorProto.FLOAT, [-2])), r"initializer 'c'.*negative dimension"),
    "raw data too short": (
        lambda: _add_const(_raw(TensorProto.FLOAT, [2], raw_data=b"abc")), r"initializer 'c'.*8 bytes.*holds 3"
    ),
    "int32_data in int64": (
        lambda: _add_const(_raw(TensorProto.INT64, [2], int32_data=[1, 2])),
        r"initializer 'c'.*int32_data.*INT64 tensor keeps its values in int64_data",
    ),
    "unknown data type": (lambda: _add_const(_raw(99, [1], raw_data=b"\0")), r"initializer 'c'.*unknown data type 99"),
    "mixed input types": (
        lambda: _add_const(numpy_helper.from_array(np.array([1, 2], np.int64), "c")),
        r"node 'add'.*inputs of type parameter T differ: tensor\(float\) and tensor\(int64\)",
    ),
    "declared output type": (
        lambda: _model([helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.INT64)]),
        r"graph output 'y' is declared tensor\(float\) but node 'cast' \(Cast\) makes tensor\(int64\)",
    ),
    "negative hidden_size": (lambda: _rnn(-4), r"node 'rnn'.*hidden_size must be positive, got -4"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_models_are_refused_at_load(case: str) -> None:
    build, message = CASES[case]
    with pytest.raises(ort.InvalidGraph, match=message):
        ort.InferenceSession(build().SerializeToString())


def _sparse(indices: np.ndarray, dims: list[int], values: int = 2) -> onnx.ModelProto:
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(values, np.float32), "w"), numpy_helper.from_array(indices, "w_i"), dims
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    "indices, dims, values, message",
    [
        (np.array([0, 9], np.int64), [4], 2, r"index 9 is out of range"),
        (np.array([-1, 0], np.int64), [4], 2, r"index -1 is out of range"),
        (np.array([[0, 0], [3, 0]], np.int64), [2, 2], 2, r"index 3 is out of range for dimension 0"),
        (np.array([0, 1, 2], np.int64), [4], 2, r"3 indices for 2 values"),
    ],
)
def test_bad_sparse_indices_are_invalid_graph(indices, dims, values, message) -> None:
    with pytest.raises(ort.InvalidGraph, match=rf"sparse tensor 'w'.*{message}"):
        ort.InferenceSession(_sparse(indices, dims, values))


def test_unsorted_nodes_are_sorted() -> None:
    model = _model([helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Neg", ["x"], ["t"])])
    assert ort.InferenceSession(model).run(None, FEED)[0].tolist() == [1.0, 0.0]


def test_a_cycle_is_invalid_graph() -> None:
    model = _model([helper.make_node("Add", ["x", "u"], ["t"], name="a"), helper.make_node("Relu", ["t"], ["u"], name="b"),
                    helper.make_node("Identity", ["t"], ["y"])])
    with pytest.raises(ort.InvalidGraph, match="cycle"):
        ort.InferenceSession(model)


def test_a_string_tensor_with_invalid_utf8_is_invalid_graph() -> None:
    tensor = TensorProto(name="c", data_type=TensorProto.STRING, dims=[2])
    tensor.string_data.extend([b"ok", b"\xff"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["y"])], "g", [], [helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ort.InvalidGraph, match=r"initializer 'c': string 1 is not valid UTF-8"):
        ort.InferenceSession(model)


def test_an_undefined_input_is_refused_before_shape_inference() -> None:
    # onnx's own shape inference crashed the process on this model (RegexFullMatch reading nothing).
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("RegexFullMatch", ["nowhere"], ["y"], name="match", pattern="a+")], "g",
            [helper.make_tensor_value_info("x", TensorProto.STRING, [3])], [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])],
        ),
        opset_imports=[helper.make_opsetid("", 20)],
    )
    model.ir_version = 9
    with pytest.raises(ort.InvalidGraph, match=r"node 'match'.*input 'nowhere' is not a graph input"):
        ort.InferenceSession(model.SerializeToString())


@pytest.mark.parametrize("field", ["op_type", "output"])
def test_names_that_are_not_utf8_are_invalid_graph(field: str) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")])
    data = model.SerializeToString()
    target = b"Relu" if field == "op_type" else b"\x12\x01y"  # NodeProto.output = "y"
    broken = b"R\xc0lu" if field == "op_type" else b"\x12\x01\xff"
    assert target in data
    with pytest.raises(ort.InvalidGraph, match=rf"field '{field}' holds .* not valid UTF-8"):
        ort.InferenceSession(data.replace(target, broken, 1))


def test_a_nested_string_that_is_not_utf8_names_its_value() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Relu", ["h"], ["y"], name="relu2")])
    model.graph.value_info.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batchsize", 4]))
    data = model.SerializeToString()
    assert data.count(b"batchsize") == 1
    with pytest.raises(ort.InvalidGraph, match=r"valueinfo 'h': field 'dim_param' holds .* not valid UTF-8"):
        ort.InferenceSession(data.replace(b"batchsize", b"batch\xffsze"))


@pytest.mark.parametrize("name", [b"caf\xc3\xa9", b"a\x00b", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"])
def test_the_c_level_text_check_agrees_with_the_walk(name: bytes) -> None:
    from onnxmux.core import validation

    model = _model([helper.make_node("Relu", ["x"], ["y"], name="QQQQQ")])
    data = model.SerializeToString().replace(b"QQQQQ", name.ljust(5, b"a"), 1)
    parsed = onnx.ModelProto.FromString(data)
    walk_ok = validation._all_text_valid(parsed)
    assert walk_ok == (type(parsed.graph.node[0].name) is str)
    checks_in_c = validation._utf8_checked_model() is not None  # False with a protobuf without editions
    assert validation.parses_with_valid_text(data, parsed) == (walk_ok and checks_in_c)


def test_a_model_file_with_bad_text_is_refused(tmp_path) -> None:
    data = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")]).SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(b"Relu", b"R\xc0lu", 1))
    with pytest.raises(ort.InvalidGraph, match=r"node 'relu': field 'op_type' holds .* not valid UTF-8"):
        ort.InferenceSession(str(path))


@pytest.mark.parametrize(
    "edges, in_order",
    [
        ([(["x"], ["a"]), (["a", ""], ["b", ""]), (["b", ""], ["c"])], True),  # empty names: absent optional values
        ([(["a"], ["b"]), (["x"], ["a"])], False),  # reads a later node's output
        ([(["x", "a"], ["a"])], False),  # reads its own output
        ([(["x"], ["a"]), (["a"], ["b"]), (["b"], ["a"])], False),  # "a" made twice: the later maker counts
    ],
)
def test_nodes_count_as_in_order_only_when_each_reads_earlier_values(edges, in_order: bool) -> None:
    from onnxmux.core import validation

    graph = helper.make_graph([helper.make_node("Foo", i, o) for i, o in edges], "g", [], [])
    assert validation._in_order(graph) is in_order
