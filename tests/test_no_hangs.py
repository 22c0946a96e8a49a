"""No hangs: regular expressions run in linear time (RE2), runs stop on RunOptions.terminate and
on the session's run_timeout_ms, and the session stays usable afterwards."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from helpers import single_node_model
from onnx import ModelProto, TensorProto, helper

import onnxmux as ort

TERMINATED = "Exiting due to terminate flag being set to true."


def test_backtracking_pattern_runs_in_linear_time() -> None:
    # Under a backtracking engine this run would not finish in the lifetime of the test.
    script = textwrap.dedent(
        """
        import numpy as np, onnxmux
        from helpers import single_node_model
        from onnx import TensorProto
        model = single_node_model("RegexFullMatch", [("x", TensorProto.STRING, [2])], [("y", TensorProto.BOOL, [2])],
                                  opset=20, pattern="(a+)+b")
        session = onnxmux.InferenceSession(model)
        print(session.run(None, {"x": np.array(["a" * 40 + "!", "aab"], dtype=object)})[0].tolist())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=str(_tests_dir())
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[False, True]"


def _tests_dir():
    from pathlib import Path

    return Path(__file__).parent


def test_pattern_re2_rejects_is_a_clear_error() -> None:
    model = single_node_model("RegexFullMatch", [("x", TensorProto.STRING, [1])], [("y", TensorProto.BOOL, [1])],
                              opset=20, pattern=r"(a)\1")
    with pytest.raises(ort.InvalidGraph, match=r"the_node.*invalid pattern"):
        ort.InferenceSession(model)


def _endless_loop_model() -> ModelProto:
    """A Loop over a huge trip count whose body adds 1 to a carried value."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["v", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "v0"], ["v"], body=body, name="loop")],
        "g",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run_in_thread(session, feed, run_options=None):
    """Start ``session.run`` in a daemon thread; returns the thread and its result holder."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = session.run(None, feed, run_options)
        except Exception as exc:  # the test inspects what was raised
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("mode", [ort.ExecutionMode.ORT_SEQUENTIAL, ort.ExecutionMode.ORT_PARALLEL])
def test_terminate_stops_a_loop_and_the_session_stays_usable(mode) -> None:
    options = ort.SessionOptions()
    options.execution_mode = mode
    session = ort.InferenceSession(_endless_loop_model(), options)
    run_options = ort.RunOptions()
    feed = {"n": np.array(10**12, np.int64), "v0": np.zeros(1, np.float32)}
    thread, result = _run_in_thread(session, feed, run_options)
    time.sleep(0.2)
    run_options.terminate = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "the run ignored RunOptions.terminate"
    assert isinstance(result.get("error"), ort.RuntimeFailure)
    assert TERMINATED in str(result["error"])
    with pytest.raises(ort.RuntimeFailure, match=TERMINATED):  # still set: the next run stops at once
        session.run(None, feed, run_options)
    run_options.terminate = False
    out = session.run(None, {"n": np.array(5, np.int64), "v0": np.zeros(1, np.float32)}, run_options)
    assert out[0].tolist() == [5.0]


def test_terminate_stops_a_scan() -> None:
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "x"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y"])],
        "body",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1, name="scan")],
        "g",
        [helper.make_tensor_value_info("s0", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("xs", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("ys", TensorProto.FLOAT, ["n", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model)
    run_options = ort.RunOptions()
    feed = {"s0": np.zeros(1, np.float32), "xs": np.ones((3_000_000, 1), np.float32)}
    thread, result = _run_in_thread(session, feed, run_options)
    time.sleep(0.2)
    run_options.terminate = True
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert TERMINATED in str(result.get("error"))


def test_run_timeout_ends_a_long_run() -> None:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.run_timeout_ms", "200")
    session = ort.InferenceSession(_endless_loop_model(), options)
    thread, result = _run_in_thread(session, {"n": np.array(10**12, np.int64), "v0": np.zeros(1, np.float32)})
    thread.join(timeout=30)
    assert not thread.is_alive(), "the run outlived session.run_timeout_ms"
    assert isinstance(result.get("error"), ort.RuntimeFailure)
    assert "session.run_timeout_ms" in str(result["error"]) and "200" in str(result["error"])
    assert session.run(None, {"n": np.array(3, np.int64), "v0": np.zeros(1, np.float32)})[0].tolist() == [3.0]


@pytest.mark.parametrize("value", ["soon", "-5"])
def test_run_timeout_must_be_a_number(value: str) -> None:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.run_timeout_ms", value)
    with pytest.raises(ort.InvalidArgument, match="session.run_timeout_ms"):
        ort.InferenceSession(_endless_loop_model(), options)
