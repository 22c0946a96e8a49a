"""Control flow (If, Loop, Scan), sequence and optional operators, and schema function bodies.

Every model is built with onnx.helper; expected values come from plain numpy computations.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.core.context import NodeContext
from onnxmux.core.provider import KernelProvider
from onnxmux.providers.cpu import CPUExecutionProvider
from onnxmux.providers.cpu.functions import function_kernel

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def vi(name: str, elem: int, shape: list | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes: list, inputs: list, outputs: list, opset: int = 17, initializers: Sequence = ()) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 9
    return proto.SerializeToString()


def session(*args: Any, **kwargs: Any) -> onnxmux.InferenceSession:
    return onnxmux.InferenceSession(model(*args, **kwargs), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- Loop


def accumulate_body() -> onnx.GraphProto:
    """acc_out = acc * w + a + i (a: outer graph input, w: outer initializer); scan output acc_out."""
    return helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["i_f"], to=F),
            helper.make_node("Mul", ["acc", "w"], ["scaled"]),
            helper.make_node("Add", ["scaled", "a"], ["shifted"]),
            helper.make_node("Add", ["shifted", "i_f"], ["acc_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Identity", ["acc_out"], ["trace"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("acc", F, [3])],
        [vi("cond_out", B, []), vi("acc_out", F, [3]), vi("trace", F, [3])],
    )


def test_loop_reads_outer_scope_values() -> None:
    w = numpy_helper.from_array(np.array([0.5, 1.0, -1.0], np.float32), "w")
    sess = session(
        [helper.make_node("Loop", ["M", "", "acc0"], ["acc", "trace"], body=accumulate_body())],
        [vi("M", I64, []), vi("acc0", F, [3]), vi("a", F, [3])],
        [vi("acc", F, [3]), vi("trace", F, [None, 3])],
        initializers=[w],
    )
    rng = np.random.default_rng(0)
    acc0 = rng.standard_normal(3).astype(np.float32)
    a = rng.standard_normal(3).astype(np.float32)
    acc, trace = sess.run(None, {"M": np.array(6, np.int64), "acc0": acc0, "a": a})
    expected, rows = acc0.copy(), []
    for i in range(6):
        expected = expected * numpy_helper.to_array(w) + a + np.float32(i)
        rows.append(expected)
    np.testing.assert_allclose(acc, expected, rtol=1e-6)
    np.testing.assert_allclose(trace, np.stack(rows), rtol=1e-6)
    assert trace.dtype == np.float32


def test_zero_iteration_loop_keeps_types() -> None:
    sess = session(
        [helper.make_node("Loop", ["M", "", "acc0"], ["acc", "trace"], body=accumulate_body())],
        [vi("M", I64, []), vi("acc0", F, [3]), vi("a", F, [3])],
        [vi("acc", F, [3]), vi("trace", F, [None, 3])],
        initializers=[numpy_helper.from_array(np.ones(3, np.float32), "w")],
    )
    acc0 = np.arange(3, dtype=np.float32)
    acc, trace = sess.run(None, {"M": np.array(0, np.int64), "acc0": acc0, "a": acc0})
    np.testing.assert_array_equal(acc, acc0)
    assert trace.shape == (0, 3) and trace.dtype == np.float32


def test_loop_condition_stops_and_missing_trip_count() -> None:
    """A while loop (no M): doubling x until its sum exceeds a limit read from the outer scope."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["x", "x"], ["x_out"]),
            helper.make_node("ReduceSum", ["x_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "limit"], ["cond_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("x", F, [2])],
        [vi("cond_out", B, []), vi("x_out", F, [2])],
    )
    sess = session(
        [helper.make_node("Loop", ["", "go", "x0"], ["x"], body=body)],
        [vi("go", B, []), vi("x0", F, [2]), vi("limit", F, [])],
        [vi("x", F, [2])],
    )
    x0 = np.array([1.0, 2.0], np.float32)
    expected = x0.copy()
    while True:
        expected = expected + expected
        if not expected.sum() < 100:
            break
    (x,) = sess.run(None, {"go": np.array(True), "x0": x0, "limit": np.array(100, np.float32)})
    np.testing.assert_array_equal(x, expected)
    (x,) = sess.run(None, {"go": np.array(False), "x0": x0, "limit": np.array(100, np.float32)})
    np.testing.assert_array_equal(x, x0)


def test_nested_if_in_loop() -> None:
    """Even iterations add the outer ``a``, odd ones subtract the loop-carried ``step``."""
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "a"], ["y"])], "then", [], [vi("y", F, [2])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Sub", ["x", "step"], ["y"])], "else", [], [vi("y", F, [2])]
    )
    body = helper.make_graph(
        [
            helper.make_node("Mod", ["i", "two"], ["parity"]),
            helper.make_node("Equal", ["parity", "zero"], ["even"]),
            helper.make_node("If", ["even"], ["x_out"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Identity", ["step"], ["step_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("x", F, [2]), vi("step", F, [2])],
        [vi("cond_out", B, []), vi("x_out", F, [2]), vi("step_out", F, [2])],
    )
    sess = session(
        [helper.make_node("Loop", ["M", "", "x0", "step0"], ["x", "step"], body=body)],
        [vi("M", I64, []), vi("x0", F, [2]), vi("step0", F, [2]), vi("a", F, [2])],
        [vi("x", F, [2]), vi("step", F, [2])],
        initializers=[
            numpy_helper.from_array(np.array(2, np.int64), "two"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ],
    )
    x0, step0, a = (np.array(v, np.float32) for v in ([1, 2], [0.5, 0.25], [10, 20]))
    x, step = sess.run(None, {"M": np.array(5, np.int64), "x0": x0, "step0": step0, "a": a})
    expected = x0.copy()
    for i in range(5):
        expected = expected + a if i % 2 == 0 else expected - step0
    np.testing.assert_allclose(x, expected)
    np.testing.assert_array_equal(step, step0)


def test_loop_sequence_carried_value() -> None:
    """A sequence as loop-carried value: insert each iteration's number, then concatenate."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Unsqueeze", ["i", "axes"], ["item"]),
            helper.make_node("SequenceInsert", ["seq", "item"], ["seq_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), helper.make_tensor_sequence_value_info("seq", I64, [1])],
        [vi("cond_out", B, []), helper.make_tensor_sequence_value_info("seq_out", I64, [1])],
    )
    sess = session(
        [
            helper.make_node("SequenceEmpty", [], ["empty"], dtype=I64),
            helper.make_node("Loop", ["M", "", "empty"], ["seq"], body=body),
            helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0),
        ],
        [vi("M", I64, [])],
        [vi("y", I64, [None])],
        initializers=[numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    (y,) = sess.run(None, {"M": np.array(4, np.int64)})
    np.testing.assert_array_equal(y, np.arange(4))


def test_loop_scan_output_declared_as_sequence() -> None:
    """Per-iteration values of growing length, collected into a sequence output (opset 13+)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["i", "one"], ["count"]),
            helper.make_node("Range", ["zero", "count", "one"], ["row"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, [])],
        [vi("cond_out", B, []), vi("row", I64, [None])],
    )
    sess = session(
        [helper.make_node("Loop", ["M", ""], ["rows"], body=body)],
        [vi("M", I64, [])],
        [helper.make_tensor_sequence_value_info("rows", I64, [None])],
        initializers=[
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array(1, np.int64), "one"),
        ],
    )
    (rows,) = sess.run(None, {"M": np.array(3, np.int64)})
    assert isinstance(rows, list) and len(rows) == 3
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row, np.arange(i + 1))


# ----------------------------------------------------------------------------- Scan


def sum_body(state_shape: list, elem_shape: list) -> onnx.GraphProto:
    """state_out = state + x_t; the scan output is state_out * 2."""
    return helper.make_graph(
        [
            helper.make_node("Add", ["state", "x_t"], ["state_out"]),
            helper.make_node("Add", ["state_out", "state_out"], ["doubled"]),
        ],
        "body",
        [vi("state", F, state_shape), vi("x_t", F, elem_shape)],
        [vi("state_out", F, state_shape), vi("doubled", F, elem_shape)],
    )


def test_scan_v9_axes_and_directions() -> None:
    """Scan over axis 1 backwards, outputs stacked on axis -1 (opset 11 negative axes) and prepended."""
    sess = session(
        [
            helper.make_node(
                "Scan",
                ["s0", "x"],
                ["s", "y"],
                body=sum_body([2], [2]),
                num_scan_inputs=1,
                scan_input_axes=[1],
                scan_input_directions=[1],
                scan_output_axes=[-1],
                scan_output_directions=[1],
            )
        ],
        [vi("s0", F, [2]), vi("x", F, [2, 4])],
        [vi("s", F, [2]), vi("y", F, [2, 4])],
        opset=11,
    )
    rng = np.random.default_rng(1)
    s0 = rng.standard_normal(2).astype(np.float32)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    s, y = sess.run(None, {"s0": s0, "x": x})
    state, outs = s0.copy(), []
    for t in reversed(range(4)):
        state = state + x[:, t]
        outs.append(state * 2)
    np.testing.assert_allclose(s, state, rtol=1e-6)
    np.testing.assert_allclose(y, np.stack(outs[::-1], axis=-1), rtol=1e-6)


def test_scan_v9_two_inputs_zero_length() -> None:
    """Two scan inputs (zip); a zero-length scan returns the initial state and empty outputs."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["a_t", "b_t"], ["prod"]),
            helper.make_node("Add", ["state", "prod"], ["state_out"]),
        ],
        "body",
        [vi("state", F, [3]), vi("a_t", F, [3]), vi("b_t", F, [3])],
        [vi("state_out", F, [3]), vi("prod", F, [3])],
    )
    sess = session(
        [
            helper.make_node(
                "Scan", ["s0", "a", "b"], ["s", "p"], body=body, num_scan_inputs=2, scan_input_directions=[0, 1]
            )
        ],
        [vi("s0", F, [3]), vi("a", F, [None, 3]), vi("b", F, [None, 3])],
        [vi("s", F, [3]), vi("p", F, [None, 3])],
    )
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((5, 3)).astype(np.float32) for _ in range(2))
    s0 = np.zeros(3, np.float32)
    s, p = sess.run(None, {"s0": s0, "a": a, "b": b})
    np.testing.assert_allclose(p, a * b[::-1], rtol=1e-6)
    np.testing.assert_allclose(s, (a * b[::-1]).sum(0), rtol=1e-5)
    empty = np.zeros((0, 3), np.float32)
    s, p = sess.run(None, {"s0": s0 + 1, "a": empty, "b": empty})
    np.testing.assert_array_equal(s, s0 + 1)
    assert p.shape == (0, 3) and p.dtype == np.float32


def test_scan_v8_batch_sequence_lens_and_directions() -> None:
    sess = session(
        [
            helper.make_node(
                "Scan", ["lens", "s0", "x"], ["s", "y"], body=sum_body([2], [2]), num_scan_inputs=1, directions=[1]
            )
        ],
        [vi("lens", TensorProto.INT64, [3]), vi("s0", F, [3, 2]), vi("x", F, [3, 4, 2])],
        [vi("s", F, [3, 2]), vi("y", F, [3, 4, 2])],
        opset=8,
    )
    rng = np.random.default_rng(3)
    s0 = rng.standard_normal((3, 2)).astype(np.float32)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    lens = np.array([4, 2, 0], np.int64)
    s, y = sess.run(None, {"lens": lens, "s0": s0, "x": x})
    expected_y = np.zeros_like(x)
    expected_s = s0.copy()
    for b in range(3):
        state = s0[b]
        for t, x_t in enumerate(x[b, : lens[b]][::-1]):
            state = state + x_t
            expected_y[b, t] = state * 2
        expected_s[b] = state
    np.testing.assert_allclose(s, expected_s, rtol=1e-6)
    np.testing.assert_allclose(y, expected_y, rtol=1e-6)


# ----------------------------------------------------------------------------- If


def test_if_branches_and_outer_values() -> None:
    then_branch = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "then", [], [vi("y", F, [3])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "else", [], [vi("y", F, [3])])
    sess = session(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [vi("c", B, [1]), vi("x", F, [3])],
        [vi("y", F, [3])],
    )
    x = np.array([1, -2, 3], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"c": np.array([True]), "x": x})[0], x * x)
    np.testing.assert_array_equal(sess.run(None, {"c": np.array([False]), "x": x})[0], -x)


# ----------------------------------------------------------------------------- errors


def expect_invalid(nodes: list, inputs: list, outputs: list, node_name: str, opset: int = 17) -> None:
    with pytest.raises(onnxmux.InvalidGraph, match=node_name):
        session(nodes, inputs, outputs, opset=opset)


def test_wrong_body_signatures_fail_at_session_creation() -> None:
    short_body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body",
        [vi("i", I64, []), vi("cond", B, [])],
        [vi("cond_out", B, [])],
    )
    expect_invalid(
        [helper.make_node("Loop", ["M", "", "x"], ["y"], body=short_body, name="bad_loop")],
        [vi("M", I64, []), vi("x", F, [2])],
        [vi("y", F, [2])],
        "bad_loop",
    )
    expect_invalid(
        [
            helper.make_node(
                "Scan", ["s0", "x"], ["s", "y", "z"], body=sum_body([2], [2]), num_scan_inputs=1, name="bad_scan"
            )
        ],
        [vi("s0", F, [2]), vi("x", F, [4, 2])],
        [vi("s", F, [2]), vi("y", F, [4, 2]), vi("z", F, [4, 2])],
        "bad_scan",
    )
    expect_invalid(
        [
            helper.make_node(
                "Scan", ["s0", "x"], ["s", "y"], body=sum_body([2], [2]), num_scan_inputs=3, name="bad_count"
            )
        ],
        [vi("s0", F, [2]), vi("x", F, [4, 2])],
        [vi("s", F, [2]), vi("y", F, [4, 2])],
        "bad_count",
    )
    one = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "one", [], [vi("y", F, [2])])
    two = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["z"])],
        "two",
        [],
        [vi("y", F, [2]), vi("z", F, [2])],
    )
    expect_invalid(
        [helper.make_node("If", ["c"], ["y"], then_branch=one, else_branch=two, name="bad_if")],
        [vi("c", B, []), vi("x", F, [2])],
        [vi("y", F, [2])],
        "bad_if",
    )


# ----------------------------------------------------------------------------- sequences


def test_sequence_round_trip() -> None:
    """Split, edit with negative positions, read back, measure and concatenate."""
    seq_info = helper.make_tensor_sequence_value_info
    sess = session(
        [
            helper.make_node("SplitToSequence", ["x", "sizes"], ["parts"], axis=1),
            helper.make_node("SequenceInsert", ["parts", "extra", "minus_one"], ["inserted"]),
            helper.make_node("SequenceInsert", ["inserted", "extra"], ["appended"]),
            helper.make_node("SequenceErase", ["appended", "zero"], ["erased"]),
            helper.make_node("SequenceErase", ["erased"], ["trimmed"]),
            helper.make_node("SequenceAt", ["trimmed", "minus_one"], ["last"]),
            helper.make_node("SequenceLength", ["trimmed"], ["count"]),
            helper.make_node("ConcatFromSequence", ["trimmed"], ["joined"], axis=1),
            helper.make_node("SplitToSequence", ["x"], ["rows"], axis=0, keepdims=0),
            helper.make_node("ConcatFromSequence", ["rows"], ["stacked"], axis=-1, new_axis=1),
            helper.make_node("SplitToSequence", ["x", "chunk"], ["chunks"], axis=1),
            helper.make_node("SequenceConstruct", ["x", "x"], ["pair"]),
            helper.make_node("ConcatFromSequence", ["pair"], ["doubled"], axis=0),
        ],
        [vi("x", F, [2, 5]), vi("extra", F, [2, 1])],
        [
            vi("last", F, None),
            vi("count", I64, []),
            vi("joined", F, None),
            vi("stacked", F, None),
            seq_info("chunks", F, None),
            vi("doubled", F, None),
        ],
        initializers=[
            numpy_helper.from_array(np.array([2, 3], np.int64), "sizes"),
            numpy_helper.from_array(np.array(-1, np.int64), "minus_one"),
            numpy_helper.from_array(np.array(0, np.int32), "zero"),
            numpy_helper.from_array(np.array(2, np.int64), "chunk"),
        ],
    )
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    extra = np.array([[-1], [-2]], np.float32)
    last, count, joined, stacked, chunks, doubled = sess.run(None, {"x": x, "extra": extra})
    parts = [x[:, :2], x[:, 2:]]
    parts.insert(len(parts) - 1, extra)  # position -1: before the last part
    parts.append(extra)
    parts = parts[1:-1]
    np.testing.assert_array_equal(last, parts[-1])
    assert count.dtype == np.int64 and count.shape == () and int(count) == len(parts)
    np.testing.assert_array_equal(joined, np.concatenate(parts, axis=1))
    np.testing.assert_array_equal(stacked, np.stack(list(x), axis=-1))
    assert [c.shape for c in chunks] == [(2, 2), (2, 2), (2, 1)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), x)
    np.testing.assert_array_equal(doubled, np.concatenate([x, x]))


def test_sequence_position_out_of_range_is_a_runtime_failure() -> None:
    sess = session(
        [
            helper.make_node("SequenceConstruct", ["x"], ["s"]),
            helper.make_node("SequenceAt", ["s", "p"], ["y"]),
        ],
        [vi("x", F, [2]), vi("p", I64, [])],
        [vi("y", F, [2])],
    )
    x = np.ones(2, np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "p": np.array(-1, np.int64)})[0], x)
    with pytest.raises(onnxmux.RuntimeFailure, match="out of range"):
        sess.run(None, {"x": x, "p": np.array(1, np.int64)})


def sequence_map_model() -> bytes:
    """SequenceMap: each element times the outer tensor ``k`` plus the tensor input ``b``; and its shape."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["e", "k"], ["m"]),
            helper.make_node("Add", ["m", "bias"], ["r"]),
            helper.make_node("Shape", ["e"], ["shape"]),
        ],
        "body",
        [vi("e", F, None), vi("bias", F, [])],
        [vi("r", F, None), vi("shape", I64, [1])],
    )
    return model(
        [
            helper.make_node("SplitToSequence", ["x", "sizes"], ["parts"]),
            helper.make_node("SequenceMap", ["parts", "b"], ["mapped", "shapes"], body=body),
            helper.make_node("ConcatFromSequence", ["mapped"], ["y"], axis=0),
            helper.make_node("ConcatFromSequence", ["shapes"], ["lengths"], axis=0),
        ],
        [vi("x", F, [6]), vi("b", F, []), vi("k", F, [])],
        [vi("y", F, [6]), vi("lengths", I64, [None])],
        initializers=[numpy_helper.from_array(np.array([1, 2, 3], np.int64), "sizes")],
    )


def check_sequence_map(sess: onnxmux.InferenceSession) -> None:
    x = np.arange(6, dtype=np.float32)
    y, lengths = sess.run(None, {"x": x, "b": np.array(0.5, np.float32), "k": np.array(3, np.float32)})
    np.testing.assert_allclose(y, x * 3 + 0.5)
    np.testing.assert_array_equal(lengths, [1, 2, 3])


def test_sequence_map_with_tensor_and_outer_inputs() -> None:
    check_sequence_map(onnxmux.InferenceSession(sequence_map_model(), providers=["CPUExecutionProvider"]))


# ----------------------------------------------------------------------------- optionals


def test_optional_ops() -> None:
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(F, [2]))
    opt_tensor = helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [2]))
    sess = session(
        [
            helper.make_node("Optional", [], ["empty"], type=seq_type),
            helper.make_node("Optional", ["x"], ["full"]),
            helper.make_node("OptionalHasElement", ["empty"], ["has_empty"]),
            helper.make_node("OptionalHasElement", ["full"], ["has_full"]),
            helper.make_node("OptionalHasElement", [], ["has_missing"]),
            helper.make_node("OptionalHasElement", ["x"], ["has_tensor"]),
            helper.make_node("OptionalGetElement", ["full"], ["got"]),
            helper.make_node("OptionalGetElement", ["x"], ["got_tensor"]),
        ],
        [vi("x", F, [2])],
        [
            helper.make_value_info("empty", helper.make_optional_type_proto(seq_type)),
            helper.make_value_info("full", opt_tensor),
            vi("has_empty", B, []),
            vi("has_full", B, []),
            vi("has_missing", B, []),
            vi("has_tensor", B, []),
            vi("got", F, [2]),
            vi("got_tensor", F, [2]),
        ],
        opset=18,
    )
    x = np.array([1, 2], np.float32)
    empty, full, *flags, got, got_tensor = sess.run(None, {"x": x})
    assert empty is None
    np.testing.assert_array_equal(full, x)
    assert [bool(f) for f in flags] == [False, True, False, True]
    assert all(f.dtype == np.bool_ and f.shape == () for f in flags)
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(got_tensor, x)


# ----------------------------------------------------------------------------- function bodies


@pytest.fixture
def functions_first(monkeypatch) -> list[str]:
    """CPU kernel lookup that prefers a schema function body over a registered kernel; yields
    the op types served by function bodies."""
    plain = KernelProvider.kernel_for
    served: list[str] = []

    def kernel_for(self, ctx):
        kernel = function_kernel(ctx)
        if kernel is not None and (kernel.supports is None or kernel.supports(ctx) is None):
            served.append(ctx.op_type)
            return kernel, None
        return plain(self, ctx)

    monkeypatch.setattr(CPUExecutionProvider, "kernel_for", kernel_for)
    return served


def test_function_kernel_is_none_without_a_body() -> None:
    for op_type in ("Conv", "Loop"):
        node = ir.Node("", op_type, inputs=[ir.Value(name="x")], num_outputs=1)
        assert function_kernel(NodeContext(node, 17, [None], [None])) is None


def test_function_bodies_match_numpy(functions_first) -> None:
    """Softplus (plain body, converted from opset 18), HardSigmoid (attribute defaults filled
    in), LayerNormalization (context-dependent body, a middle output left out) and
    MeanVarianceNormalization."""
    sess = session(
        [
            helper.make_node("Softplus", ["x"], ["softplus"]),
            helper.make_node("HardSigmoid", ["x"], ["hard"], beta=0.25),
            helper.make_node("LayerNormalization", ["x", "scale"], ["ln", "", "inv_std"], epsilon=1e-3),
            helper.make_node("MeanVarianceNormalization", ["x"], ["mvn"], axes=[1]),
        ],
        [vi("x", F, [3, 4]), vi("scale", F, [4])],
        [
            vi("softplus", F, [3, 4]),
            vi("hard", F, [3, 4]),
            vi("ln", F, [3, 4]),
            vi("inv_std", F, [3, 1]),
            vi("mvn", F, [3, 4]),
        ],
        opset=22,
    )
    # the bodies' own ops that have function bodies (CastLike, ReduceMean...) expand too
    assert {"HardSigmoid", "LayerNormalization", "MeanVarianceNormalization", "Softplus"} <= set(functions_first)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    scale = rng.standard_normal(4).astype(np.float32)
    softplus, hard, ln, inv_std, mvn = sess.run(None, {"x": x, "scale": scale})
    np.testing.assert_allclose(softplus, np.log1p(np.exp(x)), rtol=1e-5)
    np.testing.assert_allclose(hard, np.clip(0.2 * x + 0.25, 0, 1), rtol=1e-6)
    mean, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    np.testing.assert_allclose(ln, (x - mean) / np.sqrt(var + 1e-3) * scale, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(var + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(mvn, (x - mean) / np.sqrt(var + 1e-9), rtol=1e-4, atol=1e-5)


def test_sequence_map_through_its_function_body(functions_first) -> None:
    """SequenceMap's context-dependent body is a Loop whose body reads the outer value ``k``."""
    check_sequence_map(onnxmux.InferenceSession(sequence_map_model(), providers=["CPUExecutionProvider"]))
    assert functions_first == ["SequenceMap"]
