"""Custom operators in Python: registration scopes, typing and shape functions, kernels on several
providers, partitioning and copies, constant folding of pure ops, and the errors."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxmux
from test_providers import DeviceArray

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), value_info=()) -> bytes:
    graph = helper.make_graph(nodes, "custom", inputs, outputs, list(initializers), value_info=list(value_info))
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.test", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def _scale_model(y_shape=None, **attrs) -> bytes:
    """x [batch, 3] -> com.test::Scale -> s -> Relu -> y."""
    return _model(
        [
            helper.make_node("Scale", ["x"], ["s"], name="scale_node", domain="com.test", **attrs),
            helper.make_node("Relu", ["s"], ["y"], name="relu"),
        ],
        [helper.make_tensor_value_info("x", F, ["batch", 3])],
        [helper.make_tensor_value_info("y", F, y_shape)],
    )


def _scale_op(kernel=None, **spec) -> onnxmux.CustomOp:
    defaults = dict(
        inputs=["X: T"],
        outputs=["Y: T"],
        type_constraints={"T": ["float", "tensor(double)"]},
        attributes={"factor": 2.0},
        shape=lambda x, factor: x,
    )
    defaults.update(spec)
    return onnxmux.CustomOp(
        "com.test", "Scale", kernel or (lambda x, factor: x * np.asarray(factor, x.dtype)), **defaults
    )


def _session(model: bytes, *ops, providers=None, level=None) -> onnxmux.InferenceSession:
    options = onnxmux.SessionOptions()
    options.register_custom_ops(*ops)
    if level is not None:
        options.graph_optimization_level = level
    return onnxmux.InferenceSession(model, options, providers=providers)


X = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32)


def test_global_decorator_and_register_and_unregister() -> None:
    @onnxmux.custom_op(
        "com.test",
        "Scale",
        inputs=["X: T"],
        outputs=["Y: T"],
        type_constraints={"T": ["float"]},
        attributes={"factor": 1.0},
    )
    def scale(x, factor):
        return x * np.float32(factor)

    try:
        assert isinstance(scale, onnxmux.CustomOp) and scale(np.ones(2, np.float32), 3.0).tolist() == [3.0, 3.0]
        (y,) = onnxmux.InferenceSession(_scale_model(factor=3.0)).run(None, {"x": X})
        np.testing.assert_allclose(y, np.maximum(X * 3, 0))
        with pytest.raises(
            onnxmux.InvalidArgument, match=r"com\.test::Scale \(since version 1\) is already registered globally"
        ):
            onnxmux.register_custom_op(_scale_op())
        # A session's own op of the same name takes precedence over the global one.
        (y,) = _session(_scale_model(factor=3.0), _scale_op(lambda x, factor: x + factor)).run(None, {"x": X})
        np.testing.assert_allclose(y, np.maximum(X + 3, 0))
    finally:
        onnxmux.unregister_custom_op(scale)
    with pytest.raises(onnxmux.UnsupportedOperator, match="scale_node"):
        onnxmux.InferenceSession(_scale_model())
    with pytest.raises(onnxmux.InvalidArgument, match="is not registered globally"):
        onnxmux.unregister_custom_op(scale)


def test_session_registration_is_per_options_and_twice_is_an_error() -> None:
    op = _scale_op()
    (y,) = _session(_scale_model(), op).run(None, {"x": X})
    np.testing.assert_allclose(y, np.maximum(X * 2, 0))
    options = onnxmux.SessionOptions()
    options.register_custom_ops([op])
    with pytest.raises(onnxmux.InvalidArgument, match="com.test::Scale .* already registered in these session options"):
        options.register_custom_ops(_scale_op())
    with pytest.raises(onnxmux.InvalidArgument, match="expected an onnxmux.CustomOp"):
        options.register_custom_ops("Scale")
    with pytest.raises(onnxmux.UnsupportedOperator, match=r"node 'scale_node' \(Scale, com.test"):
        onnxmux.InferenceSession(_scale_model())  # other options: the op is unknown


def test_definition_errors() -> None:
    for domain in ("", "ai.onnx", "ai.onnx.ml", "com.onnxmux"):
        with pytest.raises(onnxmux.InvalidArgument, match="reserved"):
            onnxmux.CustomOp(domain, "Op", lambda x: x, inputs=["X"], outputs=["Y"])
    with pytest.raises(onnxmux.InvalidArgument, match="unknown tensor type 'tensor\\(floaty\\)'"):
        _scale_op(inputs=["X: tensor(floaty)"])
    with pytest.raises(
        onnxmux.InvalidArgument,
        match="the type 'U' of 'X' is neither a type constraint \\(declared: T\\) nor a tensor type",
    ):
        _scale_op(inputs=["X: U"])
    with pytest.raises(onnxmux.InvalidArgument, match="required input 'B' follows an optional one"):
        _scale_op(inputs=["X?: T", "B: T"])
    with pytest.raises(onnxmux.InvalidArgument, match="not callable"):
        _scale_op(shape="x")


def test_shape_function_types_outputs_and_downstream_nodes() -> None:
    session = _session(_scale_model(), _scale_op())
    (y,) = session.get_outputs()
    assert y.type == "tensor(float)" and y.shape == ["batch", 3]  # through Relu, from the shape function
    without = _session(_scale_model(), _scale_op(shape=None))
    assert without.get_outputs()[0].type == "tensor(float)"  # the dtype still follows the constraint


def test_shape_function_of_wrong_rank_is_caught_at_session_creation() -> None:
    model = _model(
        [helper.make_node("Scale", ["x"], ["y"], name="scale_node", domain="com.test")],
        [helper.make_tensor_value_info("x", F, ["batch", 3])],
        [helper.make_tensor_value_info("y", F, ["batch", 3])],
    )
    with pytest.raises(
        onnxmux.InvalidGraph, match=r"node 'scale_node' \(com.test::Scale\).*output 'y' rank 3 .*declares rank 2"
    ):
        _session(model, _scale_op(shape=lambda x, factor: (*x, 1)))
    with pytest.raises(onnxmux.InvalidGraph, match="dimension 1 = 4 .* declares 3"):
        _session(model, _scale_op(shape=lambda x, factor: (x[0], 4)))
    with pytest.raises(onnxmux.InvalidGraph, match="a shape is a list of dims"):
        _session(model, _scale_op(shape=lambda x, factor: "batch"))
    with pytest.raises(onnxmux.InvalidGraph, match="shape function raised ZeroDivisionError"):
        _session(model, _scale_op(shape=lambda x, factor: 1 / 0))
    with pytest.raises(onnxmux.InvalidGraph, match="output 'y' is tensor\\(double\\).*declares tensor\\(float\\)"):
        _session(model, _scale_op(outputs=["Y: tensor(double)"]))


def test_kernel_errors_name_the_op_and_node_and_the_session_stays_usable() -> None:
    def picky(x, factor):
        if (x < 0).any():
            raise ValueError("negative input")
        return x * np.float32(factor)

    session = _session(_scale_model(), _scale_op(picky))
    with pytest.raises(
        onnxmux.RuntimeFailure,
        match=r"node 'scale_node' .*com.test::Scale kernel 'test_kernel_errors.*picky' raised ValueError: negative input",
    ):
        session.run(None, {"x": X})
    (y,) = session.run(None, {"x": np.abs(X)})
    np.testing.assert_allclose(y, np.abs(X) * 2)
    wrong_dtype = _session(_scale_model(), _scale_op(lambda x, factor: x.astype(np.float64)))
    with pytest.raises(
        onnxmux.RuntimeFailure, match="returned tensor\\(double\\) for output 'Y', declared tensor\\(float\\)"
    ):
        wrong_dtype.run(None, {"x": X})
    wrong_rank = _session(_scale_model(), _scale_op(lambda x, factor: x.ravel()))
    with pytest.raises(onnxmux.RuntimeFailure, match=r"returned shape \[6\] for output 'Y', expected \[batch, 3\]"):
        wrong_rank.run(None, {"x": X})


def test_type_constraints_decide_whether_a_provider_takes_the_node() -> None:
    model = _model(
        [helper.make_node("Scale", ["x"], ["y"], name="scale_node", domain="com.test")],
        [helper.make_tensor_value_info("x", TensorProto.INT32, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [3])],
    )
    with pytest.raises(
        onnxmux.UnsupportedOperator,
        match=r"input 'X' is tensor\(int32\); com.test::Scale accepts tensor\(double\), tensor\(float\)",
    ):
        _session(model, _scale_op())
    (y,) = _session(model, _scale_op(type_constraints={"T": ["int32"]})).run(None, {"x": np.arange(3, dtype=np.int32)})
    assert y.dtype == np.int32 and y.tolist() == [0, 2, 4]


def test_attributes_are_checked_converted_and_defaulted() -> None:
    seen = []
    op = _scale_op(lambda x, factor: seen.append(factor) or x, attributes={"factor": 1.5})
    _session(_scale_model(), op).run(None, {"x": X})
    _session(_scale_model(factor=4), op).run(None, {"x": X})  # an int attribute for a float one
    assert seen == [1.5, 4.0] and isinstance(seen[1], float)
    with pytest.raises(onnxmux.InvalidGraph, match="scale_node.*attribute 'fator' is not declared by com.test::Scale"):
        _session(_scale_model(fator=1.0), _scale_op())
    with pytest.raises(onnxmux.InvalidGraph, match="attribute 'factor' must be float, got str"):
        _session(_scale_model(factor="two"), _scale_op())
    two_inputs = _model(
        [helper.make_node("Scale", ["x", "x"], ["y"], name="scale_node", domain="com.test")],
        [helper.make_tensor_value_info("x", F, [3])],
        [helper.make_tensor_value_info("y", F, [3])],
    )
    with pytest.raises(
        onnxmux.InvalidGraph, match="com.test::Scale takes 1..1 inputs and up to 1 outputs; the node has 2 and 1"
    ):
        _session(two_inputs, _scale_op())
    required = _scale_op(attributes={"factor": float})
    with pytest.raises(onnxmux.InvalidGraph, match="required attribute 'factor' \\(float\\) is missing"):
        _session(_scale_model(), required)


def test_optional_inputs_and_several_outputs() -> None:
    def split_bias(x, bias=None):
        y = x if bias is None else x + bias
        return y[..., :1], y[..., 1:]

    op = onnxmux.CustomOp(
        "com.test",
        "SplitBias",
        split_bias,
        inputs=["X: T", "B?: T"],
        outputs=["A: T", "R: T"],
        type_constraints={"T": ["float"]},
        shape=lambda x, b=None: [(*x[:-1], 1), (*x[:-1], x[-1] - 1)],
    )
    for inputs, bias in ((["x"], 0), (["x", "b"], 1)):
        model = _model(
            [helper.make_node("SplitBias", inputs, ["a", "r"], name="split", domain="com.test")],
            [helper.make_tensor_value_info("x", F, [2, 3])],
            [helper.make_tensor_value_info("a", F, None), helper.make_tensor_value_info("r", F, None)],
            [helper.make_tensor("b", F, [3], [1.0, 1.0, 1.0])],
        )
        session = _session(model, op)
        assert [o.shape for o in session.get_outputs()] == [[2, 1], [2, 2]]
        a, r = session.run(None, {"x": X})
        np.testing.assert_allclose(np.concatenate([a, r], axis=1), X + bias)


def test_custom_ops_take_part_in_partitioning_and_copies() -> None:
    """TestDevice takes Relu; the op runs where a kernel exists for it, and copies follow."""
    op_cpu = _scale_op()
    host = _session(_scale_model(), op_cpu, providers=["test-device", "cpu"])
    nodes = {n["name"]: n["provider"] for n in host.get_execution_plan().to_dict()["nodes"]}
    assert nodes == {"scale_node": "CPUExecutionProvider", "relu": "TestDeviceExecutionProvider"}
    assert [(c["value"], c["to"]) for c in host.get_execution_plan().to_dict()["copies"]] == [
        ("s", "testdev:0"),
        ("y", "cpu"),
    ]

    calls = []

    def on_device(x, xp, factor):
        assert isinstance(x, DeviceArray), "the device kernel must receive device values"
        calls.append(factor)
        return DeviceArray(x.array * np.float32(factor))

    op_device = _scale_op(kernels={"test-device": on_device})
    device = _session(_scale_model(), op_device, providers=["test-device", "cpu"])
    plan = device.get_execution_plan().to_dict()
    assert {n["name"]: n["provider"] for n in plan["nodes"]} == {n: "TestDeviceExecutionProvider" for n in nodes}
    assert [(c["value"], c["to"]) for c in plan["copies"]] == [("x", "testdev:0"), ("y", "cpu")]
    (y,) = device.run(None, {"x": X})
    np.testing.assert_allclose(y, np.maximum(X * 2, 0))
    assert calls == [2.0]
    # Without the device first, the CPU takes it with the numpy kernel.
    assert _session(_scale_model(), op_device).get_execution_plan().to_dict()["copies"] == []


def test_constant_folding_evaluates_only_pure_ops() -> None:
    def model() -> bytes:
        return _model(
            [
                helper.make_node("Scale", ["w"], ["sw"], name="scale_w", domain="com.test", factor=3.0),
                helper.make_node("Add", ["x", "sw"], ["y"], name="add"),
            ],
            [helper.make_tensor_value_info("x", F, [2, 3])],
            [helper.make_tensor_value_info("y", F, [2, 3])],
            [helper.make_tensor("w", F, [3], [1.0, 2.0, 3.0])],
        )

    for pure, expected_calls in ((True, 1), (False, 2)):
        calls = []
        op = _scale_op(lambda x, factor: calls.append(1) or x * np.float32(factor), pure=pure)
        session = _session(model(), op)
        for _ in range(2):
            (y,) = session.run(None, {"x": X})
            np.testing.assert_allclose(y, X + np.array([3.0, 6.0, 9.0], np.float32))
        names = [n["name"] for n in session.get_execution_plan().to_dict()["nodes"]]
        assert ("scale_w" in names) is not pure
        assert len(calls) == expected_calls  # folded: once at creation; else once per run
    disabled = _session(model(), _scale_op(pure=True), level=onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert "scale_w" in [n["name"] for n in disabled.get_execution_plan().to_dict()["nodes"]]


def test_custom_op_inside_a_subgraph() -> None:
    body = helper.make_graph(
        [helper.make_node("Scale", ["x"], ["t"], name="inner_scale", domain="com.test", factor=5.0)],
        "then",
        [],
        [helper.make_tensor_value_info("t", F, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"], name="ident")],
        "else",
        [],
        [helper.make_tensor_value_info("e", F, None)],
    )
    model = _model(
        [helper.make_node("If", ["c"], ["y"], name="if", then_branch=body, else_branch=other)],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", F, [2, 3])],
        [helper.make_tensor_value_info("y", F, None)],
    )
    session = _session(model, _scale_op())
    np.testing.assert_allclose(session.run(None, {"c": np.array(True), "x": X})[0], X * 5)
    np.testing.assert_allclose(session.run(None, {"c": np.array(False), "x": X})[0], X)


def test_example_runs(capsys) -> None:
    example = Path(__file__).parent.parent / "examples" / "custom_ops.py"
    namespace = runpy.run_path(str(example), run_name="example")  # registers Swish globally
    try:
        namespace["main"]()
    finally:
        onnxmux.unregister_custom_op(namespace["swish"])
    out = capsys.readouterr().out
    assert "sentence = ['custom-ops-work', 'in-python-too']" in out
    assert "y: tensor(float) ['batch', 4]" in out and "sentence: tensor(string) ['batch']" in out


def test_a_kernel_for_the_opencl_provider_runs_on_its_device() -> None:
    from onnxmux.providers.opencl import OpenCLExecutionProvider

    reason = OpenCLExecutionProvider.unavailable_reason()
    if reason is not None:
        pytest.skip(f"OpenCL is not usable here: {reason}")

    def on_opencl(x, xp, factor):
        return xp.upload(xp.download(x) * np.float32(factor))  # a device tensor in, a device tensor out

    session = _session(
        _scale_model(), _scale_op(kernels={"OpenCLExecutionProvider": on_opencl}), providers=["opencl", "cpu"]
    )
    plan = session.get_execution_plan().to_dict()
    assert {n["name"]: n["provider"] for n in plan["nodes"]}["scale_node"] == "OpenCLExecutionProvider"
    assert all(c["value"] != "s" for c in plan["copies"])  # the op's output stays on the device
    np.testing.assert_allclose(session.run(None, {"x": X})[0], np.maximum(X * 2, 0))
