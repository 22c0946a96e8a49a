"""Node outputs' and initializers' value infos given to the IR once per distinct type (onnxmux/core/value_infos.py)."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxmux.core import value_infos
from onnxmux.core.loader import load


def chain(n: int = 6) -> onnx.ModelProto:
    """x -> Relu -> Relu ... with a value info per intermediate, one with a doc string, and a
    graph output whose declared shape differs from its value info's."""
    names = ["x"] + [f"y{k}" for k in range(n)]
    nodes = [helper.make_node("Relu", [names[k]], [names[k + 1]]) for k in range(n)]
    infos = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4]) for name in names[1:]]
    infos[2].doc_string = "kept by onnx-ir"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [3, 4])],
        value_info=infos,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def outputs(graph: ir.Graph) -> dict[str, tuple]:
    return {v.name: (v.type, None if v.shape is None else tuple(v.shape), v.doc_string) for n in graph for v in n.outputs}


def test_node_outputs_get_what_onnx_ir_would_give_them() -> None:
    model = chain()
    assert outputs(load(model).model.graph) == outputs(ir.from_proto(model).graph)


def test_only_plain_node_output_infos_leave_the_proto() -> None:
    graph = chain().graph
    taken = value_infos.take_plain_infos(graph)
    assert [i.name for i in taken] == ["y0", "y1", "y3", "y4"]  # y2 has a doc string; y5 is the graph output
    assert [i.name for i in graph.value_info] == ["y2", "y5"]


def test_outputs_sharing_a_type_share_a_frozen_shape() -> None:
    graph = load(chain()).model.graph
    first, second = (node.outputs[0] for node in list(graph)[:2])
    assert first.shape == second.shape and first.shape.frozen  # frozen as onnx-ir's own shapes are
    with pytest.raises(TypeError):
        first.shape[0] = 7  # so a change cannot reach the other value through the shared shape
    assert str(second.shape[0]) == "N"


def with_initializers() -> onnx.ModelProto:
    """The chain plus Add nodes reading initializers whose value infos restate their type, rename a
    dimension, drop the shape, carry a doc string, or belong to an initializer that is also an input."""
    model = chain(3)
    graph = model.graph
    specs = {"w_same": [4], "w_named": ["K"], "w_noshape": None, "w_doc": [4], "w_input": [4]}
    for k, (name, dims) in enumerate(specs.items()):
        graph.initializer.append(numpy_helper.from_array(np.full(4, k, np.float32), name))
        info = helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
        graph.value_info.append(info)
        graph.node.append(helper.make_node("Add", ["y2", name], [f"s{k}"]))
        graph.output.append(helper.make_tensor_value_info(f"s{k}", TensorProto.FLOAT, None))
    graph.value_info[-2].doc_string = "kept by onnx-ir"
    graph.input.append(helper.make_tensor_value_info("w_input", TensorProto.FLOAT, [4]))
    return model


def initializers(graph: ir.Graph) -> dict[str, tuple]:
    return {
        name: (v.type, None if v.shape is None else tuple(str(d) for d in v.shape), v.doc_string)
        for name, v in graph.initializers.items()
    }


def test_initializers_get_what_onnx_ir_would_give_them() -> None:
    model = with_initializers()
    mine, theirs = initializers(load(model).model.graph), initializers(ir.from_proto(model).graph)
    assert mine == theirs
    assert mine["w_named"][1] == ("K",) and mine["w_noshape"][1] is None and mine["w_doc"][2] == "kept by onnx-ir"


def test_initializer_infos_leave_the_proto_unless_input_or_not_plain() -> None:
    graph = with_initializers().graph
    taken = {i.name for i in value_infos.take_plain_infos(graph)}
    assert {"w_same", "w_named", "w_noshape"} <= taken
    assert {i.name for i in graph.value_info if i.name.startswith("w_")} == {"w_doc", "w_input"}


def _types() -> list[onnx.TypeProto]:
    """Type protos of every kind the loader meets: static, symbolic and unknown dims, scalars,
    no shape, denotations, non-tensor types."""
    made = [
        helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 3, 224, 224]),
        helper.make_tensor_type_proto(TensorProto.INT64, ["batch", 7, None]),
        helper.make_tensor_type_proto(TensorProto.BOOL, []),
        helper.make_tensor_type_proto(TensorProto.FLOAT16, None),
        helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])),
        helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.INT32, ["n"])),
    ]
    denoted = helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 3])
    denoted.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    typed = helper.make_tensor_type_proto(TensorProto.FLOAT, [2])
    typed.denotation = "TENSOR"
    return made + [denoted, typed]


@pytest.mark.parametrize("index", range(8))
def test_plain_tensor_types_read_as_serde_reads_them(index: int) -> None:
    proto = _types()[index]
    expected_type = ir.serde.deserialize_type_proto_for_type(proto)
    expected_shape = ir.serde.deserialize_type_proto_for_shape(proto)
    found = value_infos._plain_tensor(proto, {})
    if found is None:  # serde's own path: anything but a plain tensor type
        assert proto.WhichOneof("value") != "tensor_type" or proto.denotation or proto.tensor_type.shape.dim[0].denotation
        return
    tensor_type, shape = found
    assert tensor_type == expected_type and tensor_type.denotation is None
    if expected_shape is None:
        assert shape is None
        return
    assert list(shape.dims) == list(expected_shape.dims) and shape == expected_shape
    assert [type(d) for d in shape.dims] == [type(d) for d in expected_shape.dims]
    with pytest.raises(TypeError):  # frozen, as serde's are (values may share one)
        shape[0] = 5
