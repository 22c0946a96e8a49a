"""Input donation (onnxmux/core/donation.py): element-wise kernels writing into an input that dies
at their node give exactly the results of the plan without donation, never touch feeds,
initializers, graph outputs or values sharing memory with a live one, and do take place."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux as ort
from onnxmux.core.donation import DONATE_KEY

ROWS, COLS = 64, 80  # 5,120 elements: above donation's size floor
FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=20, extra_opsets=()):
    graph = helper.make_graph(
        nodes,
        "donation",
        [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in inputs],
        [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs],
        [numpy_helper.from_array(array, name) for name, array in initializers],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in extra_opsets]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _session(model: bytes, donate: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.add_session_config_entry(DONATE_KEY, "1" if donate else "0")
    return ort.InferenceSession(model, options)


def _donated_ops(session: ort.InferenceSession) -> list[str]:
    plan = session._plan
    return sorted(plan.labels[i].op_type for i in plan.donated)


def _check(model: bytes, feeds: dict[str, np.ndarray], runs: int = 3) -> ort.InferenceSession:
    """Run with and without donation: equal results on every run, feeds unchanged, no output
    sharing memory with a feed or another output. Returns the donating session."""
    donating, plain = _session(model, True), _session(model, False)
    kept = {name: array.copy() for name, array in feeds.items()}
    expected = plain.run(None, feeds)
    for _ in range(runs):
        got = donating.run(None, feeds)
        for name, array in feeds.items():
            np.testing.assert_array_equal(array, kept[name], err_msg=f"feed {name} changed")
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)
            assert not any(np.shares_memory(g, f) for f in feeds.values())
        for i, g in enumerate(got):
            assert not any(np.shares_memory(g, h) for h in got[i + 1 :])
    return donating


def _x(dtype=np.float32, shape=(ROWS, COLS), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(1, 50, shape).astype(dtype)


DYN = ["n", COLS]


def test_chain_is_donated_and_variants_write_in_place():
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Exp", ["r"], ["e"]),
        helper.make_node("Add", ["x", "e"], ["y"]),
    ]
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)])
    session = _check(model, {"x": _x()})
    assert _donated_ops(session) == ["Add", "Exp", "Relu"]
    plan = session._plan
    for index in plan.donated:  # the marked variants do write into their donated input
        step = plan.steps[index]
        position = next(p for p, slot in enumerate(step[1]) if slot not in plan.input_slots)
        args = [_x(seed=p) for p in range(len(step[1]))]
        result = plan.donated[index](*args)
        assert result is args[position] or np.shares_memory(result, args[position])
    assert _donated_ops(_session(model, False)) == []


def test_small_static_outputs_are_not_donated():
    nodes = [helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    model = _model(nodes, [("x", FLOAT, [4, 4])], [("y", FLOAT)])
    assert _donated_ops(_check(model, {"x": _x(shape=(4, 4))})) == []


def test_view_of_a_dying_value_keeps_it():
    # a dies at its Add, but its reshaped view v is read afterwards: a must not be overwritten
    nodes = [
        helper.make_node("Add", ["x", "x"], ["a"]),
        helper.make_node("Reshape", ["a", "flat"], ["v"]),
        helper.make_node("Add", ["a", "x"], ["b"]),
        helper.make_node("Reshape", ["b", "flat"], ["bf"]),
        helper.make_node("Mul", ["bf", "v"], ["y"]),
    ]
    flat = np.array([-1], dtype=np.int64)
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)], [("flat", flat)])
    session = _check(model, {"x": _x()})
    assert "Add" not in _donated_ops(session)


def test_split_outputs_and_identity_chains():
    nodes = [
        helper.make_node("Add", ["x", "x"], ["a"]),
        helper.make_node("Split", ["a"], ["s1", "s2"], axis=0, num_outputs=2),
        helper.make_node("Relu", ["s1"], ["r1"]),
        helper.make_node("Add", ["x", "x"], ["c"]),
        helper.make_node("Identity", ["c"], ["i1"]),
        helper.make_node("Identity", ["i1"], ["i2"]),
        helper.make_node("Neg", ["c"], ["n"]),
        helper.make_node("Add", ["n", "i2"], ["m"]),
        helper.make_node("Concat", ["r1", "s2"], ["cat"], axis=0),
        helper.make_node("Add", ["cat", "m"], ["y"]),
    ]
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)])
    session = _check(model, {"x": _x()})
    assert "Relu" not in _donated_ops(session) and "Neg" not in _donated_ops(session)


def test_feeds_initializers_and_graph_outputs_stay_untouched():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),  # a feed: never overwritten
        helper.make_node("Sigmoid", ["w"], ["s"]),  # an initializer
        helper.make_node("Add", ["r", "s"], ["out1"]),  # a graph output, read again below
        helper.make_node("Tanh", ["out1"], ["t"]),
        helper.make_node("Mul", ["t", "w"], ["out2"]),
    ]
    weight = _x(seed=3)
    model = _model(nodes, [("x", FLOAT, DYN)], [("out1", FLOAT), ("out2", FLOAT)], [("w", weight)])
    session = _check(model, {"x": _x()}, runs=4)
    # r and t: made and dying inside the plan (repeated runs equal: the initializer is intact)
    assert _donated_ops(session) == ["Add", "Mul"]


def test_broadcast_inputs_fall_back():
    # a (1, COLS) grows to (ROWS, COLS) at the Add: no room to write the result into it
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["row"], keepdims=1),
        helper.make_node("Relu", ["row"], ["a"]),
        helper.make_node("Expand", ["a", "shape"], ["e"]),
        helper.make_node("Add", ["a", "x"], ["b"]),
        helper.make_node("Sub", ["e", "b"], ["y"]),
    ]
    shape = np.array([ROWS, COLS], dtype=np.int64)
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)], [("axes", np.array([0])), ("shape", shape)])
    _check(model, {"x": _x()})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, np.float32, np.float16])
def test_arithmetic_in_each_dtype(dtype):
    kind = {np.int32: TensorProto.INT32, np.int64: TensorProto.INT64, np.float64: TensorProto.DOUBLE,
            np.float32: FLOAT, np.float16: TensorProto.FLOAT16}[dtype]
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["a"]),
        helper.make_node("Add", ["a", "x"], ["b"]),
        helper.make_node("Sub", ["x", "b"], ["c"]),  # the second operand donated
        helper.make_node("Abs", ["c"], ["d"]),
        helper.make_node("Mul", ["x", "x"], ["e"]),
        helper.make_node("Div", ["e", "x"], ["f"]),
        helper.make_node("Div", ["d", "f"], ["g"]),
        helper.make_node("Neg", ["g"], ["h"]),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    model = _model(nodes, [("x", kind, DYN)], [("y", kind)])
    session = _check(model, {"x": _x(dtype)})
    assert "Sub" in _donated_ops(session)


UNARY = [
    ("Sigmoid", {}), ("Tanh", {}), ("Exp", {}), ("Log", {}), ("Sqrt", {}), ("Neg", {}), ("Abs", {}),
    ("Erf", {}), ("LeakyRelu", {"alpha": 0.2}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}),
    ("HardSwish", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Softplus", {}), ("Relu", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_and_activations(dtype):
    kind = FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, last = [helper.make_node("Mul", ["x", "x"], ["v0"])], "v0"
    for k, (op_type, attrs) in enumerate(UNARY):
        nodes.append(helper.make_node(op_type, [last], [f"v{k + 1}"], **attrs))
        last = f"v{k + 1}"
    nodes.append(helper.make_node("Clip", [last, "low", "high"], ["c1"]))
    nodes.append(helper.make_node("Clip", ["c1", "", "high"], ["c2"]))
    nodes.append(helper.make_node("Clip", ["c2"], ["c3"]))  # unbounded: returns its input
    nodes.append(helper.make_node("Add", ["c3", "x"], ["y"]))
    bounds = [("low", np.array(0.1, dtype)), ("high", np.array(0.9, dtype))]
    model = _model(nodes, [("x", kind, DYN)], [("y", kind)], bounds)
    session = _check(model, {"x": _x(dtype)})
    # every kernel but the unbounded Clip, whose output is its input (read by the Add): nothing to donate
    assert _donated_ops(session) == sorted([op for op, _ in UNARY] + ["Clip", "Clip"])


def test_fused_gelu_kernels():
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["a"]),
        helper.make_node("BiasGelu", ["a", "bias"], ["b"], domain="com.microsoft"),
        helper.make_node("FastGelu", ["b", "bias"], ["c"], domain="com.microsoft"),
        helper.make_node("FastGelu", ["c"], ["d"], domain="com.microsoft"),
        helper.make_node("Gelu", ["d"], ["e"], domain="com.microsoft"),
        helper.make_node("Add", ["e", "x"], ["y"]),
    ]
    bias = ("bias", _x(shape=(COLS,), seed=5))
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)], [bias], opset=17, extra_opsets=["com.microsoft"])
    session = _check(model, {"x": _x()})
    assert _donated_ops(session) == ["Add", "BiasGelu", "FastGelu", "FastGelu", "Gelu"]


def _body(name, nodes, inputs, outputs):
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, k, s) for n, k, s in inputs],
        [helper.make_tensor_value_info(n, k, None) for n, k in outputs],
    )


def test_if_and_loop_bodies():
    then_body = _body(
        "then",
        [helper.make_node("Relu", ["x"], ["t1"]), helper.make_node("Mul", ["t1", "t1"], ["t2"]),
         helper.make_node("Tanh", ["t2"], ["t3"])],
        [],
        [("t3", FLOAT)],
    )
    else_body = _body("else", [helper.make_node("Identity", ["a"], ["e1"])], [], [("e1", FLOAT)])
    loop_body = _body(
        "loop",
        [helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("Add", ["carried", "x"], ["s"]),
         helper.make_node("Tanh", ["s"], ["next"]), helper.make_node("Relu", ["next"], ["scan"])],
        [("i", TensorProto.INT64, []), ("cond", TensorProto.BOOL, []), ("carried", FLOAT, DYN)],
        [("cond_out", TensorProto.BOOL), ("next", FLOAT), ("scan", FLOAT)],
    )
    nodes = [
        helper.make_node("Add", ["x", "x"], ["a"]),
        helper.make_node("If", ["flag"], ["f"], then_branch=then_body, else_branch=else_body),
        helper.make_node("Loop", ["trips", "", "a"], ["final", "scans"], body=loop_body),
        helper.make_node("Sigmoid", ["a"], ["sa"]),
        helper.make_node("Add", ["f", "sa"], ["y"]),
    ]
    model = _model(
        nodes,
        [("x", FLOAT, DYN), ("flag", TensorProto.BOOL, [])],
        [("y", FLOAT), ("final", FLOAT), ("scans", FLOAT)],
        [("trips", np.array(3, dtype=np.int64))],
        opset=17,
    )
    for flag in (True, False):
        _check(model, {"x": _x(), "flag": np.array(flag)})


def test_parallel_plan_runs_the_plain_kernels():
    # steps run out of list order there: a value's last reader in the list may run before another
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("Add", ["r", "s"], ["y"]),
    ]
    model = _model(nodes, [("x", FLOAT, DYN)], [("y", FLOAT)])
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 2
    session = ort.InferenceSession(model, options)
    assert not session._plan.donated
    expected = _session(model, False).run(None, {"x": _x()})[0]
    np.testing.assert_array_equal(session.run(None, {"x": _x()})[0], expected)


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_normalization_normalizes_a_dying_residual_sum_in_place(axis):
    # the residual Add's sum dies at the LayerNormalization: it is donated and overwritten with the
    # result, which equals the plain plan's and a float64 reference
    shape = [2, ROWS, COLS]
    scale, bias = _x(shape=(COLS,), seed=1), _x(shape=(COLS,), seed=2)
    if axis == 1:
        scale, bias = _x(shape=(ROWS, COLS), seed=1), _x(shape=(ROWS, COLS), seed=2)
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "scale", "bias"], ["y"], axis=axis, epsilon=1e-5),
    ]
    model = _model(
        nodes, [("x", FLOAT, ["n", ROWS, COLS]), ("r", FLOAT, ["n", ROWS, COLS])], [("y", FLOAT)],
        [("scale", scale), ("bias", bias)], opset=17,
    )
    x, r = (_x(shape=shape, seed=s) * 3 + 1 for s in (3, 4))
    session = _check(model, {"x": x, "r": r})
    assert _donated_ops(session) == ["LayerNormalization"]
    s64 = x.astype(np.float64) + r
    axes = tuple(range(axis % 3, 3))
    centered = s64 - s64.mean(axis=axes, keepdims=True)
    want = centered / np.sqrt((centered**2).mean(axis=axes, keepdims=True) + 1e-5) * scale + bias
    np.testing.assert_allclose(session.run(None, {"x": x, "r": r})[0], want, rtol=1e-5, atol=1e-5)
    index = next(iter(session._plan.donated))
    s = (x + r).astype(np.float32)
    result = session._plan.donated[index](s, scale, bias)
    assert np.shares_memory(result[0], s)


def test_large_steps_donate_beside_small_static_ones():
    # one plan holding small static outputs (not donated), large static ones and unknown shapes
    nodes = [
        helper.make_node("Mul", ["s", "s"], ["s1"]),
        helper.make_node("Relu", ["s1"], ["s2"]),
        helper.make_node("Mul", ["x", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Mul", ["u", "u"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["d"]),
    ]
    model = _model(nodes, [("s", FLOAT, [4, 4]), ("x", FLOAT, [ROWS, COLS]), ("u", FLOAT, None)], [("s2", FLOAT), ("b", FLOAT), ("d", FLOAT)])
    feeds = {"s": _x(shape=(4, 4)), "x": _x(seed=1), "u": _x(seed=2)}
    assert _donated_ops(_check(model, feeds)) == ["Relu", "Sigmoid"]
