"""The OpenCL provider: every kernel against the CPU provider, device residency, options, and
the ONNX node-test suite and real models with OpenCL first in the provider list.

Kernel tests build one-node models, run them with providers ``["opencl", "cpu"]`` and
``["cpu"]``, compare the outputs, and check in the execution plan that the node ran on OpenCL.
They run on any OpenCL device; CI uses PoCL (a CPU device with fp64 and without fp16). The
float16 kernels are exercised by letting the runtime believe the device has ``cl_khr_fp16``:
they only use ``vload_half``/``vstore_half``, which OpenCL 1.2 devices have without it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

pyopencl = pytest.importorskip("pyopencl")

import onnxmux  # noqa: E402
from onnxmux.providers.opencl import OpenCLExecutionProvider  # noqa: E402

_REASON = OpenCLExecutionProvider.unavailable_reason()
if _REASON is not None:
    pytest.skip(f"OpenCL is not usable here: {_REASON}", allow_module_level=True)

OPENCL = "OpenCLExecutionProvider"
RNG = np.random.default_rng(20240607)


class Const:
    """An input given as an initializer (known at session creation)."""

    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)


def make_model(
    op_type: str,
    inputs: Sequence[Any],
    attrs: dict[str, Any] | None = None,
    outputs: int = 1,
    opset: int = 18,
    domain: str = "",
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model and its feeds. ``inputs`` holds arrays (graph inputs), ``Const``
    (initializers) or None (an absent optional input); output types come from inference."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for i, value in enumerate(inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(value, Const):
            initializers.append(numpy_helper.from_array(value.value, name))
        else:
            array = np.asarray(value)
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, array.shape))
            feeds[name] = array
    out_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, out_names, name="node", domain=domain, **(attrs or {}))
    if domain:  # no shape inference for these: outputs typed like input 0
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(inputs[0]).dtype)
        out_types = [helper.make_tensor_value_info(n, elem, None) for n in out_names]
    else:
        out_types = [helper.make_value_info(n, onnx.TypeProto()) for n in out_names]
    graph = helper.make_graph([node], "one", graph_inputs, out_types, initializers)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model, feeds


def providers_of(session: onnxmux.InferenceSession) -> dict[str, str]:
    """Node name -> provider, from the execution plan."""
    return {n["name"]: n["provider"] for n in session.get_execution_plan().to_dict()["nodes"]}


def check(
    op_type: str,
    inputs: Sequence[Any],
    attrs: dict[str, Any] | None = None,
    outputs: int = 1,
    opset: int = 18,
    domain: str = "",
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> list[np.ndarray]:
    """Run the node on OpenCL and on the CPU; assert it ran on OpenCL and the results match."""
    model, feeds = make_model(op_type, inputs, attrs, outputs, opset, domain)
    data = model.SerializeToString()
    session = onnxmux.InferenceSession(data, providers=["opencl", "cpu"])
    declined = session.get_execution_plan().declined
    assert providers_of(session)["node"] == OPENCL, f"{op_type} did not run on OpenCL: {declined}"
    got = session.run(None, feeds)
    expected = onnxmux.InferenceSession(data, providers=["cpu"]).run(None, feeds)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, f"{g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    return got


def declined(op_type: str, inputs: Sequence[Any], attrs: dict[str, Any] | None = None, opset: int = 18, outputs: int = 1) -> str:
    """The reason OpenCL gave for passing on the node (it must have passed)."""
    model, _ = make_model(op_type, inputs, attrs, outputs, opset)
    session = onnxmux.InferenceSession(model.SerializeToString(), providers=["opencl", "cpu"])
    assert providers_of(session)["node"] != OPENCL
    return session.get_execution_plan().declined["node"][OPENCL]


def rand(*shape: int, dtype: Any = np.float32, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    """Uniform random values."""
    return RNG.uniform(low, high, shape).astype(dtype)


@pytest.fixture(scope="module")
def runtime() -> Any:
    """The shared OpenCL runtime of the default device."""
    return OpenCLExecutionProvider().xp


# -- element-wise ---------------------------------------------------------------------------

BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((2, 3, 4), (4,)),
    ((2, 1, 4), (1, 3, 1)),
    ((), (2, 3)),
    ((5, 1, 7), (1, 6, 1)),
    ((17, 33), (33,)),
    ((0, 3), (1, 3)),
    ((1,), (0,)),
    ((2, 1, 3, 1, 2, 1), (1, 2, 1, 3, 1, 2)),
    ((1, 1, 1), (1,)),
    ((129,), ()),
]


def random_broadcast_pair(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two random shapes that broadcast: ranks 0-5, dims 1-9, some set to 1 on either side."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(0, 6))
    full = [int(d) for d in rng.integers(1, 10, rank)]
    a = [1 if rng.random() < 0.3 else d for d in full]
    b = [1 if rng.random() < 0.3 else d for d in full]
    return tuple(a[int(rng.integers(0, rank + 1)) :]), tuple(b)


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS + [random_broadcast_pair(s) for s in range(8)], ids=str)
@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Less", "GreaterOrEqual"])
def test_binary_broadcasting(op_type: str, shapes: tuple) -> None:
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if op_type in ("Equal", "GreaterOrEqual"):  # small integers, so that some elements are equal
        a, b = np.round(a), np.round(b)
    check(op_type, [a, b])


def test_binary_float64_and_pow() -> None:
    check("Add", [rand(4, 5, dtype=np.float64), rand(5, dtype=np.float64)])
    check("Pow", [rand(3, 7, low=0.1, high=3), rand(7, low=-2, high=2)])
    check("Pow", [rand(6, low=-3, high=3), Const(np.array(3.0, np.float32))])
    check("PRelu", [rand(2, 3, 4, 5), Const(rand(3, 1, 1))])
    check("Mod", [rand(5, 6, low=-9, high=9), rand(6, low=1, high=4)], {"fmod": 1})


def test_logic() -> None:
    a = RNG.random((4, 5)) < 0.5
    b = RNG.random((5,)) < 0.5
    for op_type in ("And", "Or", "Xor"):
        check(op_type, [a, b])
    check("Not", [a])


UNARY = {
    "Abs": {}, "Neg": {}, "Sign": {}, "Reciprocal": {"low": 0.5}, "Sqrt": {"low": 0.0}, "Exp": {},
    "Log": {"low": 0.01}, "Ceil": {}, "Floor": {}, "Round": {}, "Erf": {}, "Sin": {}, "Cos": {}, "Tan": {"high": 1.2, "low": -1.2},
    "Asin": {"low": -1, "high": 1}, "Acos": {"low": -1, "high": 1}, "Atan": {}, "Sinh": {}, "Cosh": {},
    "Asinh": {}, "Acosh": {"low": 1, "high": 5}, "Atanh": {"low": -0.99, "high": 0.99}, "Relu": {},
    "Sigmoid": {"low": -30, "high": 30}, "Tanh": {}, "Softplus": {"low": -30, "high": 30}, "Softsign": {},
    "HardSwish": {"low": -5, "high": 5}, "Mish": {}, "Elu": {}, "Selu": {}, "Celu": {},
}


@pytest.mark.parametrize(
    "op_type, dtype",
    # Celu's schema takes float only: a double Celu is an invalid model, refused at load.
    [(op, dtype) for op in sorted(UNARY) for dtype in (np.float32, np.float64) if (op, dtype) != ("Celu", np.float64)],
)
def test_unary(op_type: str, dtype: Any) -> None:
    x = rand(3, 37, dtype=dtype, **UNARY[op_type])
    check(op_type, [x], rtol=2e-5)


@pytest.mark.parametrize(
    "op_type, attrs, opset",
    [
        ("LeakyRelu", {"alpha": 0.2}, 18),
        ("Elu", {"alpha": 0.7}, 18),
        ("Selu", {"alpha": 1.5, "gamma": 2.0}, 18),
        ("Celu", {"alpha": 2.0}, 18),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 18),
        ("ThresholdedRelu", {"alpha": 0.5}, 18),
        ("Shrink", {"lambd": 0.6, "bias": 0.2}, 18),
        ("Gelu", {}, 20),
        ("Gelu", {"approximate": "tanh"}, 20),
        ("Swish", {"alpha": 1.3}, 24),
    ],
)
def test_activations_with_attributes(op_type: str, attrs: dict, opset: int) -> None:
    check(op_type, [rand(4, 9, low=-4, high=4)], attrs, opset=opset, rtol=2e-5, atol=2e-6)


def test_special_values() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 3.4e38], np.float32)
    for op_type in ("Relu", "Abs", "Sign", "Sigmoid", "Tanh", "Floor", "Round", "IsNaN"):
        check(op_type, [x])
    check("IsInf", [x], {"detect_negative": 0})
    check("IsInf", [x])
    check("Max", [x, x[::-1].copy()])
    check("Min", [x, np.float32(0.0)])


def test_variadic() -> None:
    inputs = [rand(3, 1, 4), rand(2, 1), rand(4)]
    for op_type in ("Sum", "Mean", "Max", "Min"):
        check(op_type, inputs)
        check(op_type, inputs[:1])


def test_where_and_clip() -> None:
    condition = RNG.random((3, 1, 5)) < 0.5
    check("Where", [condition, rand(4, 5), rand(3, 4, 1)])
    check("Where", [condition, RNG.integers(0, 9, (4, 5), dtype=np.int32), np.int32(-1)])
    x = rand(5, 8, low=-3, high=3)
    check("Clip", [x, Const(np.float32(-1)), Const(np.float32(0.5))])
    check("Clip", [x, None, Const(np.float32(0.5))])
    check("Clip", [x, np.float32(-0.5)])
    check("Clip", [x])
    check("Clip", [x], {"min": -0.3, "max": 0.2}, opset=6)


@pytest.mark.parametrize(
    "source, target",
    [
        (np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int32), (np.int32, np.float32),
        (np.float32, np.bool_), (np.bool_, np.float32), (np.int64, np.float32), (np.float32, np.uint8),
        (np.float32, np.float32),
    ],
)
def test_cast(source: Any, target: Any) -> None:
    x = rand(4, 6, low=0 if target == np.uint8 else -100, high=100).astype(source)
    to = helper.np_dtype_to_tensor_dtype(np.dtype(target))
    check("Cast", [x], {"to": to})
    check("CastLike", [x, np.zeros(1, target)], opset=19)


def test_int64_and_integer_casts_stay_on_cpu() -> None:
    assert "int64" in declined("Add", [np.ones(3, np.int64), np.ones(3, np.int64)])
    assert "shape arithmetic" in declined("Cast", [np.ones(3, np.int64)], {"to": onnx.TensorProto.INT32})
    assert "shape arithmetic" in declined("Concat", [np.ones(3, np.int64), np.ones(2, np.int64)], {"axis": 0})


# -- MatMul and Gemm ------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((1, 1), (1, 1)),
    ((33, 17), (17, 65)),
    ((2, 3, 31, 9), (9, 40)),
    ((7,), (7, 5)),
    ((4, 7), (7,)),
    ((7,), (7,)),
    ((2, 1, 5, 6), (3, 6, 4)),
    ((3, 0), (0, 4)),
    ((0, 5), (5, 3)),
    ((70, 130), (130, 90)),
    ((1, 64, 64), (2, 64, 64)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes: tuple) -> None:
    check("MatMul", [rand(*shapes[0]), rand(*shapes[1])], rtol=1e-4, atol=1e-5)


def test_matmul_float64() -> None:
    check("MatMul", [rand(5, 33, 20, dtype=np.float64), rand(20, 37, dtype=np.float64)], rtol=1e-12)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (), (45,), (1, 45), (37, 1), (37, 45)], ids=str)
def test_gemm(trans_a: int, trans_b: int, c_shape: tuple | None) -> None:
    a = rand(*((19, 37) if trans_a else (37, 19)))
    b = rand(*((45, 19) if trans_b else (19, 45)))
    c = None if c_shape is None else Const(rand(*c_shape))
    attrs = {"transA": trans_a, "transB": trans_b, "alpha": 0.7, "beta": 1.3}
    check("Gemm", [a, b] + ([c] if c is not None else []), attrs, rtol=1e-4, atol=1e-5)


# -- Conv and pooling -----------------------------------------------------------------------

CONVS = [
    ((1, 3, 9, 9), (4, 3, 3, 3), {}),
    ((2, 4, 11, 7), (6, 2, 3, 2), {"group": 2, "pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((1, 6, 10, 10), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    ((2, 3, 13, 13), (5, 3, 3, 3), {"dilations": [2, 2], "strides": [2, 3]}),
    ((1, 3, 8, 9), (2, 3, 4, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 8, 9), (2, 3, 4, 3), {"auto_pad": "SAME_LOWER"}),
    ((1, 3, 8, 9), (2, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((3, 16, 5, 5), (33, 16, 1, 1), {}),
    ((1, 5, 17), (3, 5, 4), {"pads": [2, 1], "strides": [2]}),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 1, 1]}),
]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("case", CONVS, ids=lambda c: f"{c[0]}x{c[1]}")
def test_conv(case: tuple, with_bias: bool) -> None:
    x_shape, w_shape, attrs = case
    inputs = [rand(*x_shape), Const(rand(*w_shape))]
    if with_bias:
        inputs.append(Const(rand(w_shape[0])))
    check("Conv", inputs, attrs, rtol=1e-4, atol=1e-5)


def test_conv_empty_batch() -> None:
    """Checked on its own: the CPU provider's Conv fails on an empty batch."""
    model, feeds = make_model("Conv", [np.zeros((0, 3, 5, 5), np.float32), Const(rand(2, 3, 3, 3))])
    (y,) = onnxmux.InferenceSession(model.SerializeToString(), providers=["opencl"]).run(None, feeds)
    assert y.shape == (0, 2, 3, 3)


def test_conv_weights_at_run_time_and_float64() -> None:
    check("Conv", [rand(2, 4, 7, 7), rand(8, 2, 3, 3)], {"group": 2}, rtol=1e-4, atol=1e-5)
    check("Conv", [rand(1, 3, 6, 6, dtype=np.float64), rand(4, 3, 3, 3, dtype=np.float64)], {"pads": [1, 1, 1, 1]}, rtol=1e-12)


POOLS = [
    ((1, 2, 9, 9), {"kernel_shape": [3, 3]}),
    ((2, 3, 10, 11), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    ((1, 2, 10, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 12, 12), {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [1, 1]}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 15), {"kernel_shape": [4], "strides": [3], "pads": [1, 2]}),
    ((1, 1, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [2, 1, 2]}),
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: f"{c[0]}-{sorted(c[1])}")
def test_pools(case: tuple) -> None:
    shape, attrs = case
    x = rand(*shape)
    check("MaxPool", [x], attrs)
    check("AveragePool", [x], attrs, opset=19 if "dilations" in attrs else 18)
    if "pads" in attrs or attrs.get("ceil_mode"):
        check("AveragePool", [x], {**attrs, "count_include_pad": 1})


def test_global_pools_and_indices_decline() -> None:
    for shape in ((2, 3, 7, 5), (1, 4, 9), (1, 2, 3, 4, 5)):
        check("GlobalAveragePool", [rand(*shape)])
        check("GlobalMaxPool", [rand(*shape)])
    reason = declined("MaxPool", [rand(1, 1, 4, 4)], {"kernel_shape": [2, 2]}, outputs=2)
    assert "Indices" in reason


# -- normalization ----------------------------------------------------------------------------


def test_batch_normalization() -> None:
    channels = 5
    params = [Const(rand(channels, low=0.5)), Const(rand(channels)), Const(rand(channels)), Const(rand(channels, low=0.1))]
    check("BatchNormalization", [rand(2, channels, 4, 3)] + params, {"epsilon": 1e-3})
    check("BatchNormalization", [rand(3, channels)] + params)
    check("BatchNormalization", [rand(1, channels, 3, dtype=np.float64)] + [Const(p.value.astype(np.float64)) for p in params])


@pytest.mark.parametrize("axis", [-1, -2, 1, 0])
def test_layer_normalization(axis: int) -> None:
    x = rand(3, 5, 70)
    normalized = x.shape[axis:] if axis != 0 else x.shape
    scale, bias = Const(rand(*normalized)), Const(rand(*normalized))
    check("LayerNormalization", [x, scale, bias], {"axis": axis, "epsilon": 1e-4}, rtol=1e-4, atol=1e-5)
    check("LayerNormalization", [x, scale], {"axis": axis}, outputs=3, rtol=1e-4, atol=1e-5)


def test_layer_normalization_broadcast_scale_and_fused_domain() -> None:
    check("LayerNormalization", [rand(2, 3, 8), Const(rand(8)), Const(rand(1, 8))], {"axis": -2}, rtol=1e-4, atol=1e-5)
    check("LayerNormalization", [rand(4, 16), Const(rand(16)), Const(rand(16))], domain="com.onnxmux", rtol=1e-4, atol=1e-5)
    check("Gelu", [rand(4, 16)], domain="com.onnxmux", rtol=1e-5)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis, opset", [(-1, 13), (1, 13), (0, 13), (1, 11), (2, 11)])
def test_softmax(op_type: str, axis: int, opset: int) -> None:
    check(op_type, [rand(3, 4, 65, low=-20, high=20)], {"axis": axis}, opset=opset, rtol=1e-5, atol=1e-6)


# -- reductions -----------------------------------------------------------------------------

REDUCERS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("op_type", REDUCERS)
@pytest.mark.parametrize("axes, keepdims", [([1], 1), ([0, 2], 0), ([-1], 0), (None, 1), ([1, 3], 1)], ids=str)
def test_reduce(op_type: str, axes: list | None, keepdims: int) -> None:
    low = 0.5 if op_type in ("ReduceLogSum", "ReduceProd") else -2.0
    high = 1.5 if op_type == "ReduceProd" else 2.0
    x = rand(3, 5, 4, 7, low=low, high=high)
    inputs: list[Any] = [x] + ([Const(np.array(axes, np.int64))] if axes is not None else [])
    check(op_type, inputs, {"keepdims": keepdims}, rtol=1e-5, atol=1e-6)
    attrs = {"keepdims": keepdims, **({"axes": axes} if axes is not None else {})}
    check(op_type, [x], attrs, opset=11, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type", REDUCERS)
def test_reduce_empty_and_noop(op_type: str) -> None:
    check(op_type, [np.zeros((2, 0, 3), np.float32), Const(np.array([1], np.int64))])
    check(op_type, [rand(2, 3), Const(np.zeros(0, np.int64))], {"noop_with_empty_axes": 1})


def test_long_reduction_accuracy() -> None:
    """Blocked sums stay within 1e-5 of numpy's pairwise ones over 200,001 elements."""
    x = np.random.default_rng(7).uniform(0.0, 1.0, (3, 200_001)).astype(np.float32)
    check("ReduceSum", [x, Const(np.array([1], np.int64))], rtol=1e-5)
    check("ReduceMean", [x, Const(np.array([1], np.int64))], rtol=1e-5)


# -- data movement --------------------------------------------------------------------------


def test_transpose() -> None:
    check("Transpose", [rand(2, 3, 4, 5)], {"perm": [2, 0, 3, 1]})
    check("Transpose", [rand(33, 17)])
    check("Transpose", [rand(0, 3)])
    check("Transpose", [(RNG.random((3, 1, 4)) < 0.5)], {"perm": [1, 2, 0]})


def test_concat_and_split() -> None:
    check("Concat", [rand(2, 3, 4), rand(2, 1, 4), rand(2, 0, 4), rand(2, 5, 4)], {"axis": 1})
    check("Concat", [rand(2, 3), rand(4, 3)], {"axis": -2})
    check("Split", [rand(7, 4), Const(np.array([2, 5], np.int64))], {"axis": 0}, outputs=2)
    check("Split", [rand(3, 9)], {"axis": 1}, outputs=3, opset=13)
    check("Split", [rand(3, 10)], {"axis": 1, "num_outputs": 3}, outputs=3)
    check("Split", [rand(6, 2)], {"split": [1, 5]}, outputs=2, opset=11)


@pytest.mark.parametrize(
    "starts, ends, axes, steps",
    [
        ([1], [4], [0], [1]),
        ([0, 1], [3, -1], [1, 2], [2, 1]),
        ([-1], [-1000], [1], [-2]),
        ([9], [-9_223_372_036_854_775_807], [0], [-1]),
        ([2, 0], [9_223_372_036_854_775_807, 2], [2, 0], [3, 1]),
        ([5], [2], [0], [1]),
    ],
)
def test_slice(starts: list, ends: list, axes: list, steps: list) -> None:
    as_const = [Const(np.array(v, np.int64)) for v in (starts, ends, axes, steps)]
    check("Slice", [rand(6, 7, 8)] + as_const)


def test_slice_opset1_and_dynamic_bounds_decline() -> None:
    check("Slice", [rand(5, 6)], {"starts": [1, 2], "ends": [4, 100], "axes": [0, 1]}, opset=1)
    reason = declined("Slice", [rand(5, 6), np.array([1], np.int64), np.array([3], np.int64)])
    assert "computed at run time" in reason


@pytest.mark.parametrize("index_type", [np.int64, np.int32])
def test_gather(index_type: Any) -> None:
    data = rand(5, 4, 3)
    check("Gather", [data, np.array([[0, -1], [2, 4]], index_type)])
    check("Gather", [data, np.array([3, -4, 0], index_type)], {"axis": 1})
    check("Gather", [data, np.array(2, index_type)], {"axis": -1})
    check("Gather", [data, np.zeros((0, 2), index_type)], {"axis": 0})
    check("Gather", [Const(rand(100, 8)), np.array([[5, 99, 0]], index_type)])


def test_expand_and_views() -> None:
    check("Expand", [rand(3, 1), Const(np.array([2, 1, 6], np.int64))])
    check("Expand", [rand(1, 4), Const(np.array([3, 1], np.int64))])
    x = rand(2, 3, 4)
    check("Reshape", [x, Const(np.array([0, -1], np.int64))])
    check("Reshape", [rand(0, 4), Const(np.array([0, 2, 2], np.int64))], {"allowzero": 1})
    check("Flatten", [x], {"axis": 2})
    check("Flatten", [x], {"axis": 0})
    check("Squeeze", [rand(1, 3, 1, 2), Const(np.array([0, -2], np.int64))])
    check("Squeeze", [rand(1, 3, 1, 2)])
    check("Squeeze", [rand(1, 3, 1)], {"axes": [0]}, opset=11)
    check("Unsqueeze", [x, Const(np.array([0, -1], np.int64))])
    check("Unsqueeze", [x], {"axes": [1]}, opset=11)
    check("Identity", [x])
    assert "computed at run time" in declined("Expand", [rand(3, 1), np.array([2, 1, 6], np.int64)])


def test_reshape_reads_a_run_time_shape_on_the_host() -> None:
    """A shape fed at run time stays on the host: Reshape runs on OpenCL with no copy of it."""
    x = rand(2, 3, 4)
    check("Reshape", [x, np.array([6, 4], np.int64)])
    model, _ = make_model("Reshape", [x, np.array([6, 4], np.int64)], None, 1, 18, "")
    plan = onnxmux.InferenceSession(model.SerializeToString(), providers=["opencl", "cpu"]).get_execution_plan()
    assert [(c.value, c.target) for c in plan.copies] == [("in0", "opencl:0"), ("out0", "cpu")]


def test_constant() -> None:
    value = rand(3, 4)
    check("Constant", [], {"value": numpy_helper.from_array(value)})
    check("Constant", [], {"value_floats": [1.0, 2.5]})
    assert "integer" in declined("Constant", [], {"value_ints": [1, 2]})


# -- float16 ----------------------------------------------------------------------------------


@pytest.fixture
def fp16(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the runtime accept float16 nodes, as on a device with cl_khr_fp16."""
    monkeypatch.setattr(runtime, "fp16", True)


def test_float16_kernels(fp16: None) -> None:
    half = dict(rtol=2e-3, atol=2e-3)
    x = rand(3, 4, 9, dtype=np.float16)
    check("Add", [x, rand(9, dtype=np.float16)], **half)
    check("Sigmoid", [x], **half)
    check("Softmax", [x], **half)
    check("MatMul", [x, rand(9, 5, dtype=np.float16)], **half)
    check("ReduceMean", [x, Const(np.array([2], np.int64))], **half)
    check("Conv", [rand(1, 3, 6, 6, dtype=np.float16), Const(rand(2, 3, 3, 3, dtype=np.float16))], **half)
    check("Cast", [rand(5, 5, low=-70000, high=70000)], {"to": onnx.TensorProto.FLOAT16})
    check("Cast", [rand(5, 5, dtype=np.float64)], {"to": onnx.TensorProto.FLOAT16})
    check("Cast", [x], {"to": onnx.TensorProto.FLOAT})
    check("Transpose", [x], {"perm": [2, 0, 1]})


def test_float16_declined_without_extension(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "fp16", False)
    assert "cl_khr_fp16" in declined("Relu", [rand(3, dtype=np.float16)])


# -- residency, options, threads ------------------------------------------------------------


def chain_model() -> onnx.ModelProto:
    """MatMul → Add → Relu → Reshape (constant shape) → Softmax → Transpose, all OpenCL kernels."""
    w = numpy_helper.from_array(rand(16, 24), "w")
    b = numpy_helper.from_array(rand(24), "b")
    shape = numpy_helper.from_array(np.array([0, 4, 6], np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
        helper.make_node("Add", ["h", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["v"], name="reshape"),
        helper.make_node("Softmax", ["v"], ["s"], name="softmax"),
        helper.make_node("Transpose", ["s"], ["y"], name="transpose", perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w, b, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_tensors_stay_on_the_device(runtime: Any) -> None:
    data = chain_model().SerializeToString()
    session = onnxmux.InferenceSession(data, providers=["opencl", "cpu"])
    plan = session.get_execution_plan().to_dict()
    assert set(providers_of(session).values()) == {OPENCL}
    assert [(c["value"], c["from"], c["to"]) for c in plan["copies"]] == [("x", "cpu", "opencl:0"), ("y", "opencl:0", "cpu")]
    x = rand(5, 16)
    session.run(None, {"x": x})
    uploads, downloads = runtime.uploads, runtime.downloads
    (got,) = session.run(None, {"x": x})
    assert (runtime.uploads - uploads, runtime.downloads - downloads) == (1, 1)
    (expected,) = onnxmux.InferenceSession(data, providers=["cpu"]).run(None, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_concurrent_runs() -> None:
    data = chain_model().SerializeToString()
    session = onnxmux.InferenceSession(data, providers=["opencl"])
    reference = onnxmux.InferenceSession(data, providers=["cpu"])
    feeds = [rand(3 + i, 16) for i in range(6)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = session.run(None, {"x": feeds[i]})[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(feeds):
        np.testing.assert_allclose(results[i], reference.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_options() -> None:
    parse = OpenCLExecutionProvider.parse_options
    assert parse({"platform": "0", "device": "pthread", "device_type": "cpu"}) == {
        "platform": 0, "device": "pthread", "device_type": "CPU",
    }
    with pytest.raises(onnxmux.InvalidArgument):
        parse({"device_type": "FPGA"})
    with pytest.raises(onnxmux.InvalidArgument):
        parse({"platform": -1})
    with pytest.raises(onnxmux.InvalidArgument):
        parse({"queue": "1"})
    provider = OpenCLExecutionProvider({"device": 0, "device_type": "ALL"})
    assert provider.xp.description
    with pytest.raises(onnxmux.InvalidArgument, match="index 99"):
        OpenCLExecutionProvider({"device": 99})
    with pytest.raises(onnxmux.InvalidArgument, match="no OpenCL device name contains"):
        OpenCLExecutionProvider({"device": "no-such-device"})
    with pytest.raises(onnxmux.InvalidArgument, match="no OpenCL platform name contains"):
        OpenCLExecutionProvider({"platform": "no-such-platform"})
    kinds = {d.type for p in pyopencl.get_platforms() for d in p.get_devices()}
    if not any(kind & pyopencl.device_type.GPU for kind in kinds):
        with pytest.raises(onnxmux.InvalidArgument, match="no OpenCL device of type GPU"):
            OpenCLExecutionProvider({"device_type": "GPU"})
    session = onnxmux.InferenceSession(chain_model().SerializeToString(), providers=[("opencl", {"device": "0"}), "cpu"])
    assert session.get_providers() == [OPENCL, "CPUExecutionProvider"]
    assert OPENCL in onnxmux.get_available_providers()


def test_lazy_import_and_unavailable_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, onnxmux.providers.opencl; assert 'pyopencl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setattr(pyopencl, "get_platforms", lambda: [])
    assert "no devices" in OpenCLExecutionProvider.unavailable_reason()
    monkeypatch.setitem(sys.modules, "pyopencl", None)
    assert "pyopencl is not installed" in OpenCLExecutionProvider.unavailable_reason()


def test_device_tensors_refuse_host_use(runtime: Any) -> None:
    tensor = runtime.upload(np.arange(6, dtype=np.float32))
    with pytest.raises(TypeError, match="without a copy"):
        np.asarray(tensor)
    np.testing.assert_array_equal(runtime.download(tensor.reshape((2, 3))), np.arange(6).reshape(2, 3))


# -- the node-test suite and real models ----------------------------------------------------


def test_node_suite_matches_cpu(capsys: pytest.CaptureFixture) -> None:
    """Per case, passing with ["opencl", "cpu"] exactly when passing with ["cpu"]."""
    from onnxmux.conformance import node_cases, run_case

    differ, on_device, passed = [], 0, 0
    for case in node_cases():
        with_opencl = run_case(case, ["opencl", "cpu"])
        alone = run_case(case, ["cpu"])
        passed += with_opencl.passed
        if with_opencl.passed != alone.passed:
            differ.append(f"{case.name}: opencl+cpu {'passes' if with_opencl.passed else with_opencl.reason}; "
                          f"cpu {'passes' if alone.passed else alone.reason}")
        try:
            session = onnxmux.InferenceSession(case.model.SerializeToString(), providers=["opencl", "cpu"])
        except onnxmux.OnnxMuxError:
            continue
        on_device += OPENCL in providers_of(session).values()
    with capsys.disabled():
        print(f"\nnode tests on opencl,cpu: {passed} passed of {len(node_cases())}; {on_device} ran nodes on OpenCL")
    assert not differ, "\n".join(differ)


@pytest.fixture(scope="module")
def models() -> Any:
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import models as module

    return module


def _boundaries(plan: dict[str, Any], model: onnx.ModelProto) -> int:
    """Values crossing between devices: (value, consuming device) pairs whose value lives elsewhere.

    ``model`` is the optimized graph the plan describes. Graph inputs live on the host, and
    graph outputs are consumed there; initializers are uploaded once, at session creation.
    """
    device_of_partition = {p["id"]: p["device"] for p in plan["partitions"]}
    device_of_node = {n["name"]: device_of_partition[n["partition"]] for n in plan["nodes"]}
    made_on = {i.name: "cpu" for i in model.graph.input}
    for node in model.graph.node:
        for out in node.output:
            made_on[out] = device_of_node[node.name]
    crossings = set()
    for node in model.graph.node:
        for value in node.input:
            if value in made_on and made_on[value] != device_of_node[node.name]:
                crossings.add((value, device_of_node[node.name]))
    crossings.update((o.name, "cpu") for o in model.graph.output if made_on[o.name] != "cpu")
    return len(crossings)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_real_models(models: Any, runtime: Any, name: str, exporter: str, tmp_path: Path) -> None:
    """Outputs match onnxruntime; every Conv, MatMul and Gemm runs on OpenCL; copies only at boundaries."""
    ort = pytest.importorskip("onnxruntime")
    path = str(models.MODELS[name](exporter))
    options = onnxmux.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = onnxmux.InferenceSession(path, options, providers=["opencl", "cpu"])
    plan = session.get_execution_plan().to_dict()
    heavy = [n for n in plan["nodes"] if n["op_type"] in ("Conv", "MatMul", "Gemm")]
    assert heavy and all(n["provider"] == OPENCL for n in heavy)
    optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    assert len(plan["copies"]) <= _boundaries(plan, optimized)
    if name == "resnet18":
        feeds = {"input": RNG.standard_normal((2, 3, 224, 224), dtype=np.float32)}
    else:
        mask = np.ones((2, 16), np.int64)
        mask[1, 10:] = 0
        feeds = {"input_ids": RNG.integers(0, models.BERT_VOCAB, (2, 16)), "attention_mask": mask}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    (expected,) = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run(None, feeds)
    downloads = runtime.downloads
    (got,) = session.run(None, feeds)
    assert runtime.downloads - downloads == sum(c["from"] == "opencl:0" for c in plan["copies"])
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    counts = Counter(n["provider"] for n in plan["nodes"])
    print(f"{name}-{exporter}: {dict(counts)}, {len(plan['copies'])} copies")
