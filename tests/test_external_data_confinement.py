"""One confinement rule for every external byte: initializers, Constant values, sparse tensors,
function bodies and nested subgraphs resolve against the model's folder and pass one check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux as ort

VALUES = np.array([1.0, 2.0, 3.0], np.float32)


def _external(tensor: TensorProto, location: str, offset: object = 0, length: object | None = None) -> TensorProto:
    """``tensor`` with its bytes moved to external data at ``location``."""
    raw = tensor.raw_data or numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.ClearField("int64_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(len(raw) if length is None else length)}
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return tensor


def _write_data(folder: Path, name: str = "w.bin") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(VALUES.tobytes())


def _constant_model(attribute: onnx.AttributeProto, opset: int = 17) -> onnx.ModelProto:
    node = helper.make_node("Constant", [], ["y"], name="const")
    node.attribute.append(attribute)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _sparse_value(location: str) -> onnx.AttributeProto:
    values = _external(numpy_helper.from_array(VALUES, "sv"), location)
    indices = numpy_helper.from_array(np.array([0, 1, 2], np.int64), "si")
    return helper.make_attribute("sparse_value", helper.make_sparse_tensor(values, indices, [3]))


def _save(model: onnx.ModelProto, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_constant_sparse_value_outside_the_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    _write_data(tmp_path)  # the file exists one level up, and in the current directory
    monkeypatch.chdir(tmp_path)
    path = _save(_constant_model(_sparse_value("../w.bin")), tmp_path / "model")
    with pytest.raises(ort.InvalidGraph, match=r"escapes the model's folder") as info:
        ort.InferenceSession(path)
    assert "const" in str(info.value)


def test_constant_sparse_value_resolves_against_the_model_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the data is not in the current directory
    _write_data(tmp_path / "model")
    path = _save(_constant_model(_sparse_value("w.bin")), tmp_path / "model")
    np.testing.assert_array_equal(ort.InferenceSession(path).run(None, {})[0], VALUES)


def _function_model(location: str) -> onnx.ModelProto:
    inner = helper.make_node("Constant", [], ["c"], value=_external(numpy_helper.from_array(VALUES, "c"), location))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    function = helper.make_function("local", "AddConst", ["x"], ["y"], [inner, add], [helper.make_opsetid("", 17)])
    call = helper.make_node("AddConst", ["x"], ["y"], domain="local", name="call")
    graph = helper.make_graph(
        [call], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[function]
    )
    model.ir_version = 8
    return model


def test_function_body_external_data_is_confined(tmp_path: Path) -> None:
    _write_data(tmp_path)
    path = _save(_function_model("../w.bin"), tmp_path / "model")
    with pytest.raises(ort.InvalidGraph, match=r"escapes the model's folder"):
        ort.InferenceSession(path)
    _write_data(tmp_path / "ok")
    good = ort.InferenceSession(_save(_function_model("w.bin"), tmp_path / "ok"))
    np.testing.assert_array_equal(good.run(None, {"x": VALUES})[0], 2 * VALUES)


def _nested_model(location: str) -> onnx.ModelProto:
    """A Constant with external data inside an If inside a Loop body (depth 2)."""
    const = helper.make_node("Constant", [], ["c"], value=_external(numpy_helper.from_array(VALUES, "c"), location))
    branch = helper.make_graph([const], "b", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])])
    if_node = helper.make_node("If", ["cond"], ["v"], then_branch=branch, else_branch=branch)
    body = helper.make_graph(
        [if_node, helper.make_node("Identity", ["cond"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v", TensorProto.FLOAT, [3])],
    )
    loop = helper.make_node("Loop", ["n", "c0"], ["ys"], body=body, name="loop")
    graph = helper.make_graph(
        [loop], "g",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("c0", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("ys", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_external_data_in_nested_subgraphs_is_confined(tmp_path: Path) -> None:
    _write_data(tmp_path)
    with pytest.raises(ort.InvalidGraph, match=r"escapes the model's folder"):
        ort.InferenceSession(_save(_nested_model("../w.bin"), tmp_path / "model"))


@pytest.mark.parametrize(
    "location, offset, length, message",
    [
        ("w\x00.bin", 0, None, "NUL"),
        ("w.bin", "abc", None, "offset 'abc' is not a non-negative integer"),
        ("w.bin", -4, None, "offset '-4' is not a non-negative integer"),
        ("w.bin", 0, "1e3", "length '1e3' is not a non-negative integer"),
        ("w.bin", 8, 12, "past the end"),
        ("w.bin", 100, None, "past the end"),
    ],
)
def test_bad_external_data_entries_are_invalid_graph(tmp_path: Path, location, offset, length, message) -> None:
    _write_data(tmp_path)
    init = _external(numpy_helper.from_array(VALUES, "w"), location, offset, length)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ort.InvalidGraph, match=message) as info:
        ort.InferenceSession(_save(model, tmp_path))
    assert "'w'" in str(info.value)


def test_model_bytes_refuse_external_data_without_a_folder(tmp_path: Path, monkeypatch) -> None:
    _write_data(tmp_path)
    monkeypatch.chdir(tmp_path)  # the file is in the current directory: still refused
    model = _constant_model(helper.make_attribute("value", _external(numpy_helper.from_array(VALUES, "c"), "w.bin")))
    with pytest.raises(ort.InvalidGraph, match="session.external_data_dir"):
        ort.InferenceSession(model.SerializeToString())
    options = ort.SessionOptions()
    options.add_session_config_entry("session.external_data_dir", str(tmp_path))
    np.testing.assert_array_equal(ort.InferenceSession(model.SerializeToString(), options).run(None, {})[0], VALUES)
    options = ort.SessionOptions()
    options.external_data_dir = str(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ort.InvalidGraph, match="does not exist"):
        ort.InferenceSession(model.SerializeToString(), options)


def test_a_models_external_tensors_share_one_map_of_their_file(tmp_path: Path) -> None:
    from onnxmux.core.loader import load

    data = np.arange(10, dtype=np.float32)
    (tmp_path / "w.bin").write_bytes(data.tobytes() + np.arange(4, dtype=np.int64).tobytes())
    first = _external(numpy_helper.from_array(data[:6].reshape(2, 3), "a"), "w.bin", 0, 24)
    second = _external(numpy_helper.from_array(data[6:], "b"), "w.bin", 24, 16)
    third = _external(numpy_helper.from_array(np.arange(4, dtype=np.int64), "c"), "w.bin", 40, 32)
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name in "abc"]
    outputs = [helper.make_tensor_value_info(f"{name}_out", t.data_type, list(t.dims)) for name, t in zip("abc", (first, second, third))]
    graph = helper.make_graph(nodes, "g", [], outputs, [first, second, third])
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path)
    tensors = [v.const_value for v in load(path).model.graph.initializers.values()]
    arrays = [t.numpy() for t in tensors]
    np.testing.assert_array_equal(arrays[0], data[:6].reshape(2, 3))
    np.testing.assert_array_equal(arrays[1], data[6:])
    np.testing.assert_array_equal(arrays[2], np.arange(4, dtype=np.int64))
    assert tensors[0].raw is tensors[1].raw is tensors[2].raw  # one map of w.bin
    tensors[0].release()  # the others keep reading the shared map
    np.testing.assert_array_equal(tensors[1].numpy(), data[6:])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(["b_out"], {})[0], data[6:])
