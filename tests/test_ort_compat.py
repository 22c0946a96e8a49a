"""onnxruntime's Python API on the CPU provider: OrtValue, IOBinding, run variants, module paths and
exceptions, module functions, session and run options, feeds and outputs, optimized models."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import affine_relu_model, affine_relu_reference

import onnxmux as ort

X = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(affine_relu_model().SerializeToString(), providers=["CPUExecutionProvider"])


# -- 1. OrtValue -------------------------------------------------------------------------------
def test_ortvalue_from_numpy_shares_the_buffer_and_describes_it() -> None:
    value = ort.OrtValue.ortvalue_from_numpy(X)
    assert value.device_name() == "cpu" and value.shape() == [5, 3]
    assert (value.data_type(), value.element_type()) == ("tensor(float)", 1)
    assert value.is_tensor() and value.has_value() and not value.is_sparse_tensor()
    assert value.data_ptr() == X.ctypes.data and value.tensor_size_in_bytes() == X.nbytes
    assert np.shares_memory(value.numpy(), X)
    np.testing.assert_array_equal(np.asarray(value), X)
    assert np.asarray(value, dtype=np.float64).dtype == np.float64


def test_ortvalue_from_shape_and_type_and_update_inplace() -> None:
    by_numpy = ort.OrtValue.ortvalue_from_shape_and_type([2, 3], np.int64)
    by_onnx = ort.OrtValue.ortvalue_from_shape_and_type((2, 3), 7)  # TensorProto.INT64
    assert by_numpy.data_type() == by_onnx.data_type() == "tensor(int64)"
    pointer = by_numpy.data_ptr()
    by_numpy.update_inplace(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert by_numpy.data_ptr() == pointer and by_numpy.numpy()[1, 2] == 5
    with pytest.raises(ort.InvalidArgument, match="update_inplace"):
        by_numpy.update_inplace(np.zeros((3, 2), np.int64))
    strings = ort.OrtValue.ortvalue_from_numpy(np.array(["a", "bc"]))
    assert strings.data_type() == "tensor(string)" and strings.element_type() == 8
    assert list(strings.numpy()) == ["a", "bc"]


def test_ortvalue_dlpack_both_ways() -> None:
    value = ort.OrtValue.ortvalue_from_numpy(X)
    assert value.__dlpack_device__() == (1, 0)
    tensor = torch.from_dlpack(value)
    assert tensor.data_ptr() == X.ctypes.data
    source = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    imported = ort.OrtValue.from_dlpack(source)
    assert imported.data_ptr() == source.data_ptr() and imported.shape() == [2, 3]
    from_capsule = ort.OrtValue.from_dlpack(source.__dlpack__())
    np.testing.assert_array_equal(from_capsule.numpy(), source.numpy())


def test_ortvalue_vector_and_unknown_device() -> None:
    vector = ort.OrtValueVector()
    vector.push_back(ort.OrtValue.ortvalue_from_numpy(X))
    vector.push_back_batch([np.ones(2, np.int32)])
    assert len(vector) == 2 and vector.element_type_at(1) == 6
    assert [v.shape() for v in vector] == [[5, 3], [2]]
    assert torch.from_dlpack(vector.dlpack_at(0)).shape == (5, 3)
    with pytest.raises(ort.InvalidArgument, match="Unsupported device type: nodevice"):
        ort.OrtValue.ortvalue_from_numpy(X, "nodevice", 0)


# -- 2. IOBinding on the CPU --------------------------------------------------------------------
def test_iobinding_on_cpu_with_raw_pointers(session) -> None:
    binding = session.io_binding()
    x = np.ascontiguousarray(X)
    binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
    out = np.zeros_like(x)
    binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    binding.synchronize_inputs()
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    np.testing.assert_allclose(out, affine_relu_reference(x), rtol=1e-6)
    (result,) = binding.get_outputs()
    assert isinstance(result, ort.OrtValue) and result.device_name() == "cpu"
    assert len(binding.get_outputs_as_ortvaluevector()) == 1
    with pytest.raises(ort.InvalidArgument, match="`element_type` and `shape` are to be provided"):
        binding.bind_output("y", "cpu", 0, None, None, out.ctypes.data)


def test_iobinding_errors_and_clearing(session) -> None:
    binding = session.io_binding()
    with pytest.raises(ort.InvalidArgument, match="Failed to find NodeArg with name: nope"):
        binding.bind_cpu_input("nope", X)
    with pytest.raises(ort.InvalidArgument, match="Failed to find NodeArg with name: nope"):
        binding.bind_output("nope")
    binding.bind_cpu_input("x", X)
    with pytest.raises(ort.InvalidArgument, match="At least one output should be requested"):
        session.run_with_iobinding(binding)
    binding.bind_output("y")
    binding.clear_binding_inputs()
    with pytest.raises(ort.InvalidArgument, match="Required inputs"):
        session.run_with_iobinding(binding)
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(X))
    session.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], affine_relu_reference(X), rtol=1e-6)
    binding.clear_binding_outputs()
    with pytest.raises(ort.InvalidArgument):
        session.run_with_iobinding(binding)


# -- 3. run variants ----------------------------------------------------------------------------
def test_run_with_ort_values(session) -> None:
    (y,) = session.run_with_ort_values(None, {"x": ort.OrtValue.ortvalue_from_numpy(X)})
    assert isinstance(y, ort.OrtValue)
    np.testing.assert_allclose(y.numpy(), affine_relu_reference(X), rtol=1e-6)


def test_run_async_calls_back_with_results_or_the_error(session) -> None:
    done = threading.Event()
    seen: list = []

    def callback(results, user_data, error) -> None:
        seen.append((results, user_data, error, threading.current_thread() is threading.main_thread()))
        done.set()

    session.run_async(None, {"x": X}, callback, "data")
    assert done.wait(30)
    results, user_data, error, on_main = seen.pop()
    assert (user_data, error, on_main) == ("data", "", False)
    np.testing.assert_allclose(results[0], affine_relu_reference(X), rtol=1e-6)
    done.clear()
    session.run_async(None, {"x": X.astype(np.float64)}, callback, None)
    assert done.wait(30)
    results, _, error, _ = seen.pop()
    assert results == [] and "Unexpected input data type" in error


# -- 3. module paths, exceptions, running onnxruntime programs ------------------------------------
def test_capi_module_paths_hold_onnxmux_classes() -> None:
    from onnxmux.capi import _pybind_state, onnxruntime_inference_collection, onnxruntime_pybind11_state as C

    for name in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
                 "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail"):
        cls = getattr(C, name)
        assert issubclass(cls, C.Fail) and issubclass(cls, ort.OnnxMuxError) and getattr(_pybind_state, name) is cls
    for name in ("OrtValue", "OrtValueVector", "SessionOptions", "RunOptions", "GraphOptimizationLevel", "ExecutionMode",
                 "ExecutionOrder", "OrtDevice", "OrtMemoryInfo", "OrtArenaCfg", "OrtMemType", "OrtAllocatorType"):
        assert getattr(C, name) is getattr(ort, name)
    assert ort.InvalidArgument is C.InvalidArgument and issubclass(ort.InvalidArgument, ValueError)
    assert issubclass(ort.UnsupportedOperator, C.NotImplemented) and issubclass(ort.RuntimeFailure, C.RuntimeException)
    assert issubclass(ort.EPFail, ort.ProviderError)
    collection = onnxruntime_inference_collection
    assert collection.InferenceSession is ort.InferenceSession and collection.IOBinding is ort.IOBinding
    assert collection.OrtValue is ort.OrtValue and collection.OrtDevice is ort.OrtDevice
    with pytest.warns(UserWarning) as caught:
        names, options = collection.check_and_normalize_provider_args(
            ["CPUExecutionProvider", ("CPUExecutionProvider", {"a": 1}), ("X", {"n": 2})], None, ["CPUExecutionProvider"]
        )
    assert (names, options) == (["CPUExecutionProvider", "X"], [{}, {"n": "2"}])
    assert sorted(str(w.message).split()[0] for w in caught) == ["Duplicate", "Specified"]
    with pytest.raises(ValueError, match="should be the same length"):
        collection.check_and_normalize_provider_args(["a"], [{}, {}], [])


def test_errors_are_caught_by_onnxruntime_except_clauses(tmp_path) -> None:
    from onnxmux.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidProtobuf, NoSuchFile

    with pytest.raises(NoSuchFile):
        ort.InferenceSession(str(tmp_path / "absent.onnx"))
    with pytest.raises(InvalidProtobuf):
        ort.InferenceSession(b"\x08\x07not a model at all")
    with pytest.raises(Fail):
        ort.InferenceSession(affine_relu_model().SerializeToString()).run(None, {"x": X.astype(np.int32)})
    with pytest.raises(InvalidArgument):
        ort.InferenceSession(affine_relu_model().SerializeToString(), providers=["NoSuchExecutionProvider"])


def test_compat_runner_aliases_onnxruntime(tmp_path) -> None:
    script = tmp_path / "program.py"
    script.write_text(
        "import sys\n"
        "import onnxruntime\n"
        "import onnxruntime.capi.onnxruntime_pybind11_state as C\n"
        "from onnxruntime.capi._pybind_state import OrtValue\n"
        "from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession\n"
        "print(onnxruntime.__name__, C.InvalidArgument.__module__, InferenceSession.__module__, sys.argv[1:])\n"
    )
    done = subprocess.run([sys.executable, "-m", "onnxmux.compat", str(script), "a", "b"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onnxmux", "onnxmux.core.errors", "onnxmux.core.session", "['a',", "'b']"]


def test_onnxruntime_example_gives_the_same_output_on_both_runtimes() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "onnxruntime_program.py"
    reference = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=300)
    ours = subprocess.run([sys.executable, "-m", "onnxmux.compat", str(example)], capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    assert ours.returncode == 0, ours.stderr
    assert "probs:" in reference.stdout and "caught a bad feed" in reference.stdout
    assert ours.stdout == reference.stdout
