"""The onnxruntime-compatible session API: metadata, providers, feeds, errors, threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import affine_relu_model, affine_relu_reference

import onnxmux as ort


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(affine_relu_model().SerializeToString(), providers=["CPUExecutionProvider"])


def test_inputs_outputs_and_metadata(session) -> None:
    (x,) = session.get_inputs()
    assert (x.name, x.shape, x.type) == ("x", ["batch", 3], "tensor(float)")
    (y,) = session.get_outputs()
    assert (y.name, y.shape, y.type) == ("y", ["batch", 3], "tensor(float)")
    (bias,) = session.get_overridable_initializers()
    assert (bias.name, bias.shape) == ("bias", [3])
    meta = session.get_modelmeta()
    assert meta.producer_name == "tests" and meta.graph_name == "affine_relu"
    assert meta.custom_metadata_map == {"author": "tests"}
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_provider_options() == {"CPUExecutionProvider": {}}


def test_run_all_and_named_outputs(session) -> None:
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, affine_relu_reference(x), rtol=1e-6)
    (y2,) = session.run(["y"], {"x": x})
    np.testing.assert_array_equal(y, y2)


def test_overriding_an_initializer(session) -> None:
    x = np.ones((2, 3), np.float32)
    bias = np.array([5.0, 5.0, 5.0], np.float32)
    (y,) = session.run(None, {"x": x, "bias": bias})
    np.testing.assert_allclose(y, affine_relu_reference(x, bias))


@pytest.mark.parametrize(
    ("feed", "outputs", "words"),
    [
        ({}, None, ["missing input", "'x'", "tensor(float)"]),
        ({"x": np.ones((1, 3), np.float32), "z": np.ones(1)}, None, ["unknown input name", "'z'", "x"]),
        ({"x": np.ones((1, 3), np.float64)}, None, ["'x'", "tensor(float)", "tensor(double)"]),
        ({"x": np.ones((3,), np.float32)}, None, ["'x'", "rank 2", "rank 1"]),
        ({"x": np.ones((2, 4), np.float32)}, None, ["'x'", "dimension 1 must be 3", "got 4"]),
        ({"x": [[1.0, "one", 3.0]]}, None, ["'x'", "tensor(float)", "list", "does not convert"]),
        ({"x": np.ones((1, 3), np.float32)}, ["nope"], ["unknown output name", "'nope'", "y"]),
    ],
)
def test_bad_feeds_raise_invalid_argument_and_session_survives(session, feed, outputs, words) -> None:
    with pytest.raises(ort.InvalidArgument) as info:
        session.run(outputs, feed)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ort.OnnxMuxError)
    for word in words:
        assert word in str(info.value)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], affine_relu_reference(x))


def test_concurrent_runs_from_threads(session) -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((int(rng.integers(1, 50)), 3)).astype(np.float32) for _ in range(16)]
    errors: list[str] = []

    def worker(x: np.ndarray) -> None:
        for _ in range(50):
            (y,) = session.run(None, {"x": x})
            if not np.allclose(y, affine_relu_reference(x), rtol=1e-6):
                errors.append("wrong result")

    threads = [threading.Thread(target=worker, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_provider_names_aliases_and_tuples() -> None:
    model = affine_relu_model().SerializeToString()
    for providers in (["cpu"], [("CPUExecutionProvider", {})], ["CPUExecutionProvider"], None):
        assert ort.InferenceSession(model, providers=providers).get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ort.InvalidArgument) as info:
        ort.InferenceSession(model, providers=["NoSuchExecutionProvider"])
    assert "NoSuchExecutionProvider" in str(info.value) and "CPUExecutionProvider" in str(info.value)
    with pytest.raises(ort.InvalidArgument, match="must be a dict"):
        ort.InferenceSession(model, providers=[("cpu", "not-a-dict")])
    with pytest.raises(ort.InvalidArgument, match="one dict per entry"):
        ort.InferenceSession(model, providers=["cpu"], provider_options=[{}, {}])


def test_onnxruntime_names_exist() -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "0")
    assert options.get_session_config_entry("session.disable_cpu_ep_fallback") == "0"
    session = ort.InferenceSession(affine_relu_model().SerializeToString(), sess_options=options)
    x = np.ones((1, 3), np.float32)
    assert session.run(None, {"x": x}, ort.RunOptions())[0].shape == (1, 3)
    assert "CPUExecutionProvider" in ort.get_available_providers()
    assert {"CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"} <= set(ort.get_all_providers())
    assert isinstance(ort.__version__, str)


def test_import_and_cpu_session_load_no_provider_dependency() -> None:
    code = (
        "import sys, onnxmux; from helpers import affine_relu_model;"
        "onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=['cpu']);"
        "print(sorted(m for m in ('openvino', 'cupy', 'pyopencl', 'tensorrt') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


def test_profiling_writes_a_chrome_trace(tmp_path) -> None:
    import json

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "trace")
    session = ort.InferenceSession(affine_relu_model().SerializeToString(), options)
    assert session.get_profiling_start_time_ns() > 0
    for _ in range(3):
        session.run(None, {"x": np.ones((2, 3), np.float32)})
    path = session.end_profiling()
    events = [e for e in json.loads(open(path).read()) if e["cat"] == "Node"]
    assert len(events) == 9 and {e["ph"] for e in events} == {"X"}
    assert sum(e["name"] == "mul_kernel_time" for e in events) == 3 and all(e["dur"] >= 0 for e in events)
    plain = ort.InferenceSession(affine_relu_model().SerializeToString())
    assert plain.end_profiling() == "" and plain.get_profiling_start_time_ns() == 0
