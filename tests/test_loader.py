"""Loading: sources, external data confinement, malformed files, versions, unsupported nodes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import affine_relu_model, affine_relu_reference, single_node_model
from onnx import TensorProto, helper, numpy_helper

import onnxmux as ort


def _run(source) -> np.ndarray:
    x = np.full((2, 3), 0.5, np.float32)
    (y,) = ort.InferenceSession(source).run(None, {"x": x})
    np.testing.assert_allclose(y, affine_relu_reference(x))
    return y


def test_loads_from_path_bytes_and_proto(tmp_path: Path) -> None:
    model = affine_relu_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    _run(str(path))
    _run(path)
    _run(model.SerializeToString())
    _run(model)


def _external_model(tmp_path: Path) -> tuple[onnx.ModelProto, Path]:
    model = affine_relu_model()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    return onnx.load(tmp_path / "m.onnx", load_external_data=False), tmp_path / "m.onnx"


def test_external_data_beside_the_model(tmp_path: Path) -> None:
    _, path = _external_model(tmp_path)
    assert (tmp_path / "m.onnx.data").exists()
    _run(path)


def _relocate(model: onnx.ModelProto, location: str, path: Path) -> Path:
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    out = path.with_name("moved.onnx")
    onnx.save(model, out)
    return out


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "missing"])
def test_external_data_may_not_leave_the_model_folder(tmp_path: Path, kind: str) -> None:
    inner = tmp_path / "model"
    inner.mkdir()
    model, path = _external_model(inner)
    data = inner / "m.onnx.data"
    if kind == "parent":
        os.rename(data, tmp_path / "m.onnx.data")
        location = "../m.onnx.data"
    elif kind == "absolute":
        location = str(data.resolve())
    elif kind == "symlink":
        os.rename(data, tmp_path / "outside.data")
        os.symlink(tmp_path / "outside.data", inner / "link.data")
        location = "link.data"
    else:
        location = "nothing-here.data"
    moved = _relocate(model, location, path)
    with pytest.raises(ort.InvalidGraph) as info:
        ort.InferenceSession(str(moved))
    assert location in str(info.value)
    assert "initializer" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an onnx model at all", b"\x08\x07\x12\x05hello\x3a\xff\xff\xff\xff\x0f"],
)
def test_malformed_files_raise_invalid_graph(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ort.InvalidGraph):
        ort.InferenceSession(str(path))


def test_truncated_file_raises_invalid_graph(tmp_path: Path) -> None:
    data = affine_relu_model().SerializeToString()
    for cut in (len(data) // 3, len(data) - 7):
        with pytest.raises(ort.InvalidGraph):
            ort.InferenceSession(data[:cut])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ort.InvalidGraph, match="cannot read"):
        ort.InferenceSession(str(tmp_path / "absent.onnx"))


def test_opset_newer_than_supported() -> None:
    model = affine_relu_model()
    model.opset_import[0].version = 99
    with pytest.raises(ort.UnsupportedModel) as info:
        ort.InferenceSession(model)
    message = str(info.value)
    assert "ai.onnx" in message and "99" in message and str(onnx.defs.onnx_opset_version()) in message


def test_ir_version_newer_than_supported() -> None:
    model = affine_relu_model()
    model.ir_version = onnx.IR_VERSION + 5
    with pytest.raises(ort.UnsupportedModel, match="IR version"):
        ort.InferenceSession(model)


def test_node_without_kernel_fails_at_creation() -> None:
    model = single_node_model(
        "Frobnicate", [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])], domain="com.example"
    )
    with pytest.raises(ort.UnsupportedOperator) as info:
        ort.InferenceSession(model)
    message = str(info.value)
    for word in ("the_node", "Frobnicate", "com.example", "opset 1", "CPUExecutionProvider"):
        assert word in message


def test_undefined_input_is_an_invalid_graph() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ghost"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ort.InvalidGraph, match="ghost"):
        ort.InferenceSession(model)


def test_kernel_failure_names_the_node_and_session_survives() -> None:
    model = single_node_model(
        "Reshape",
        [("x", TensorProto.FLOAT, ["n"]), ("shape", TensorProto.INT64, [2])],
        [("y", TensorProto.FLOAT, None)],
    )
    session = ort.InferenceSession(model)
    with pytest.raises(ort.RuntimeFailure, match="the_node"):
        session.run(None, {"x": np.ones(5, np.float32), "shape": np.array([2, 2], np.int64)})
    (y,) = session.run(None, {"x": np.ones(4, np.float32), "shape": np.array([2, 2], np.int64)})
    assert y.shape == (2, 2)


def test_intermediates_are_released_after_their_last_reader() -> None:
    n = 12
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"r{i}") for i in range(n)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "unused")],
    )
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    plan = session._plan
    released = [slot for step in plan.steps for slot in step[3]]
    assert len(released) == len(set(released))
    for index, step in enumerate(plan.steps):
        for slot in step[1]:
            if slot in plan.output_slots:
                continue
            later_reads = [s for s in plan.steps[index + 1 :] if slot in s[1]]
            assert (slot in step[3]) == (not later_reads)


def test_sparse_constants_and_initializers_are_densified() -> None:
    values = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([1, 5], np.int64)), [2, 3])
    coo = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([3.0], np.float32), "w2"), numpy_helper.from_array(np.array([[1, 0]], np.int64)), [2, 3]
    )
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], sparse_value=sparse), helper.make_node("Add", ["c", "w2"], ["y"])],
        "sparse",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        sparse_initializer=[coo],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (y,) = ort.InferenceSession(model).run(None, {})
    np.testing.assert_array_equal(y, [[0, 1, 0], [3, 0, 2]])


def test_sparse_constant_inside_a_branch_is_densified() -> None:
    # the loader walks node attributes for sparse tensors only when some attribute may hold one
    values = numpy_helper.from_array(np.array([4.0], np.float32), "v")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([2], np.int64)), [3])

    def branch(name: str, node: onnx.NodeProto) -> onnx.GraphProto:
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, [3])])

    then = branch("then", helper.make_node("Constant", [], ["t"], sparse_value=sparse))
    other = branch("else", helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(np.zeros(3, np.float32))))
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
        "nested_sparse",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model)
    np.testing.assert_array_equal(session.run(None, {"cond": np.array(True)})[0], [0, 0, 4])
    np.testing.assert_array_equal(session.run(None, {"cond": np.array(False)})[0], [0, 0, 0])


def test_check_nodes_reports_the_attribute_types_in_use() -> None:
    from onnxmux.core.validation import check_nodes

    inner = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "body", [], [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])])
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
        helper.make_node("If", ["c"], ["b"], then_branch=inner, else_branch=inner),
    ]
    graph = helper.make_graph(
        nodes, "kinds", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert check_nodes(model) == {onnx.AttributeProto.FLOAT, onnx.AttributeProto.GRAPH}
    plain = helper.make_model(helper.make_graph(nodes[:1], "plain", graph.input[:1], [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])]))
    assert check_nodes(plain) == {onnx.AttributeProto.FLOAT}
