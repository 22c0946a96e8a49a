"""onnxruntime's Python API on the CPU provider: OrtValue, IOBinding, run variants, module paths and
exceptions, module functions, session and run options, feeds and outputs, optimized models."""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import onnxruntime
from onnx import TensorProto, helper
from helpers import affine_relu_model, affine_relu_reference, single_node_model

import onnxmux as ort
from onnxmux.core import runtime_info
from onnxmux.core.registry import KernelDef

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


def test_run_with_ortvaluevector(session) -> None:
    feeds, fetches = ort.OrtValueVector(), ort.OrtValueVector()
    feeds.push_back(ort.OrtValue.ortvalue_from_numpy(X))
    session.run_with_ortvaluevector(ort.RunOptions(), ["x"], feeds, ["y"], fetches, [ort.OrtDevice.make("cpu", 0)])
    assert len(fetches) == 1 and fetches[0].device_name() == "cpu"
    np.testing.assert_allclose(fetches[0].numpy(), affine_relu_reference(X), rtol=1e-6)


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


def test_plain_sys_modules_alias_resolves_the_capi_paths() -> None:
    saved = {n: m for n, m in sys.modules.items() if n == "onnxruntime" or n.startswith("onnxruntime.")}
    try:
        for name in saved:
            del sys.modules[name]
        sys.modules["onnxruntime"] = ort
        state = importlib.import_module("onnxruntime.capi.onnxruntime_pybind11_state")
        collection = importlib.import_module("onnxruntime.capi.onnxruntime_inference_collection")
        assert state.InvalidArgument is ort.InvalidArgument and state.OrtValue is ort.OrtValue
        assert collection.InferenceSession is ort.InferenceSession
    finally:
        for name in [n for n in sys.modules if n == "onnxruntime" or n.startswith("onnxruntime.")]:
            del sys.modules[name]
        sys.modules.update(saved)


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


# -- 5. module functions --------------------------------------------------------------------------
def test_module_functions() -> None:
    assert ort.get_device() in ("CPU", "GPU")
    assert ort.get_version_string() == ort.__version__ and ort.__version__ in ort.get_build_info()
    logger = logging.getLogger("onnxmux")
    before = logger.level
    try:
        ort.set_default_logger_severity(3)
        assert logger.level == logging.ERROR
        with pytest.raises(ort.InvalidArgument, match="severity"):
            ort.set_default_logger_severity(7)
    finally:
        logger.setLevel(before)
    ort.set_default_logger_verbosity(1)
    ort.enable_telemetry_events()
    ort.disable_telemetry_events()


def test_set_seed_makes_unseeded_random_nodes_repeatable() -> None:
    model = single_node_model("RandomNormal", [], [("y", TensorProto.FLOAT, [4])], shape=[4], dtype=1)
    ort.set_seed(123)
    first = ort.InferenceSession(model.SerializeToString()).run(None, {})[0]
    ort.set_seed(123)
    second = ort.InferenceSession(model.SerializeToString()).run(None, {})[0]
    np.testing.assert_array_equal(first, second)
    ort.set_seed(124)
    third = ort.InferenceSession(model.SerializeToString()).run(None, {})[0]
    runtime_info._seed[0] = None  # other tests' random nodes draw from OS entropy again
    assert not np.array_equal(first, third)


# -- 6. InferenceSession methods --------------------------------------------------------------
def test_set_providers_repartitions_and_refuses_unknown_names() -> None:
    sess = ort.InferenceSession(affine_relu_model().SerializeToString(), providers=["CPUExecutionProvider"])
    sess.set_providers(["TestDeviceExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["TestDeviceExecutionProvider", "CPUExecutionProvider"]
    assert {n["provider"] for n in sess.get_execution_plan().nodes} == {"TestDeviceExecutionProvider", "CPUExecutionProvider"}
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], affine_relu_reference(X), rtol=1e-6)
    with pytest.raises(ort.InvalidArgument, match="unknown execution provider 'Nope'"):
        sess.set_providers(["Nope"])
    assert sess.get_providers() == ["TestDeviceExecutionProvider", "CPUExecutionProvider"]
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], affine_relu_reference(X), rtol=1e-6)


def _failing_relu(ctx, xp):
    def run(x):
        raise ort.EPFail("the failing test provider lost its device")

    return run


class FailingProvider(ort.KernelProvider):
    """Claims Relu and fails running it with EPFail."""

    name = "FailingTestExecutionProvider"
    registry = ort.KernelRegistry()
    registry.add(KernelDef("Relu", "", 1, _failing_relu))


ort.register_provider(FailingProvider)


def test_fallback_retries_on_the_cpu_once_unless_disabled() -> None:
    model = affine_relu_model().SerializeToString()
    sess = ort.InferenceSession(model, providers=["FailingTestExecutionProvider", "CPUExecutionProvider"])
    sess.disable_fallback()
    with pytest.raises(ort.EPFail, match="lost its device"):
        sess.run(None, {"x": X})
    sess.enable_fallback()
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], affine_relu_reference(X), rtol=1e-6)
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_graph_assignment_info_needs_the_config_entry() -> None:
    model = affine_relu_model().SerializeToString()
    with pytest.raises(ort.Fail, match="session.record_ep_graph_assignment_info"):
        ort.InferenceSession(model).get_provider_graph_assignment_info()
    options = ort.SessionOptions()
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, options, providers=["TestDeviceExecutionProvider", "CPUExecutionProvider"])
    info = sess.get_provider_graph_assignment_info()
    by_provider = {}
    for subgraph in info:
        by_provider.setdefault(subgraph.ep_name, []).extend(n.op_type for n in subgraph.get_nodes())
    assert sorted(by_provider["CPUExecutionProvider"]) == ["Add", "Mul"]
    assert by_provider["TestDeviceExecutionProvider"] == ["Relu"]
    assert sess.get_session_options() is options


def test_memory_infos_follow_the_plan() -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    on_device = ort.InferenceSession(affine_relu_model().SerializeToString(), options, providers=["TestDeviceExecutionProvider"])
    (out,) = on_device.get_output_memory_infos()
    assert (out.name, out.device_id) == ("Testdev", 0)  # Relu runs on the test device
    (inp,) = on_device.get_input_memory_infos()
    assert inp.name == "Cpu"  # Mul reads it on the CPU
    assert inp.mem_type == ort.OrtMemType.DEFAULT
    cpu = ort.InferenceSession(affine_relu_model().SerializeToString())
    assert [m.name for m in cpu.get_input_memory_infos() + cpu.get_output_memory_infos()] == ["Cpu", "Cpu"]


# -- 7. SessionOptions and RunOptions ---------------------------------------------------------
def test_options_refuse_unknown_attributes_and_keep_onnxruntime_fields() -> None:
    options = ort.SessionOptions()
    with pytest.raises(AttributeError, match="graph_optimisation_level"):
        options.graph_optimisation_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.use_deterministic_compute = True
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    options.enable_mem_pattern = options.enable_cpu_mem_arena = False
    options.logid = "session-1"
    options.profile_file_prefix = "prefix"
    with pytest.raises(ort.Fail, match="register_custom_op"):
        options.register_custom_ops_library("libcustom.so")
    with pytest.raises(ort.InvalidArgument, match="does not have configuration with key: nope"):
        options.get_session_config_entry("nope")
    run_options = ort.RunOptions()
    run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    assert run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    with pytest.raises(ort.InvalidArgument, match="RunOptions does not have configuration with key: zz"):
        run_options.get_run_config_entry("zz")
    run_options.run_tag = run_options.logid = "run-1"
    run_options.log_severity_level = 3
    with pytest.raises(AttributeError):
        run_options.terminated = True
    sess = ort.InferenceSession(affine_relu_model().SerializeToString(), options)
    np.testing.assert_allclose(sess.run(None, {"x": X}, run_options)[0], affine_relu_reference(X), rtol=1e-6)


def test_free_dimension_overrides() -> None:
    model = affine_relu_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    by_name = ort.SessionOptions()
    by_name.add_free_dimension_override_by_name("batch", 5)
    sess = ort.InferenceSession(model.SerializeToString(), by_name)
    assert sess.get_inputs()[0].shape == [5, 3]
    with pytest.raises(ort.InvalidArgument, match="Got invalid dimensions for input: x"):
        sess.run(None, {"x": X[:2]})
    by_denotation = ort.SessionOptions()
    by_denotation.add_free_dimension_override_by_denotation("DATA_BATCH", 2)
    assert ort.InferenceSession(model.SerializeToString(), by_denotation).get_inputs()[0].shape == [2, 3]
    with pytest.raises(ort.InvalidArgument, match="non-negative int"):
        by_name.add_free_dimension_override_by_name("batch", -1)


def test_initializers_from_ortvalues_and_files_in_memory(tmp_path) -> None:
    bias = np.array([5.0, 6.0, 7.0], np.float32)
    options = ort.SessionOptions()
    options.add_initializer("bias", ort.OrtValue.ortvalue_from_numpy(bias))
    sess = ort.InferenceSession(affine_relu_model().SerializeToString(), options)
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], affine_relu_reference(X, bias), rtol=1e-6)
    wrong = ort.SessionOptions()
    wrong.add_external_initializers(["scale"], [ort.OrtValue.ortvalue_from_numpy(np.ones(4, np.float32))])
    with pytest.raises(ort.InvalidArgument, match="'scale' is float32\\[3\\]"):
        ort.InferenceSession(affine_relu_model().SerializeToString(), wrong)
    onnx.save(affine_relu_model(), str(tmp_path / "m.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ort.InvalidGraph, match="does not exist"):
        ort.InferenceSession(str(tmp_path / "m.onnx"))
    in_memory = ort.SessionOptions()
    in_memory.add_external_initializers_from_files_in_memory(["weights.bin"], [np.frombuffer(data, np.uint8)], [len(data)])
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), in_memory)
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], affine_relu_reference(X), rtol=1e-6)


def test_session_options_embedded_in_the_model(monkeypatch) -> None:
    model = affine_relu_model()
    onnx.helper.set_model_props(model, {"ort_config": json.dumps({"session_options": {"graph_optimization_level": 0, "intra_op_num_threads": 1}})})
    options = ort.SessionOptions()
    monkeypatch.delenv("ORT_LOAD_CONFIG_FROM_MODEL", raising=False)
    sess = ort.InferenceSession(model.SerializeToString(), options)
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    monkeypatch.setenv("ORT_LOAD_CONFIG_FROM_MODEL", "1")
    sess = ort.InferenceSession(model.SerializeToString(), options)
    effective = sess.get_session_options()
    assert effective.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert effective.intra_op_num_threads == 1 and options.intra_op_num_threads == 0  # the caller's object is kept
    onnx.helper.set_model_props(model, {"ort_config": json.dumps({"session_options": {"no_such_option": 1}})})
    with pytest.raises(ort.InvalidGraph, match="unknown session option 'no_such_option'"):
        ort.InferenceSession(model.SerializeToString())


# -- 8. feeds and outputs ---------------------------------------------------------------------
def passthrough_model() -> onnx.ModelProto:
    """Strings, int64s and floats through Identity nodes; ``x`` is also a graph output itself."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["s"], ["s_out"]),
            helper.make_node("Identity", ["n"], ["n_out"]),
            helper.make_node("Identity", ["x"], ["x_copy"]),
        ],
        "passthrough",
        [
            helper.make_tensor_value_info("s", TensorProto.STRING, ["k"]),
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("s_out", TensorProto.STRING, ["k"]),
            helper.make_tensor_value_info("n_out", TensorProto.INT64, []),
            helper.make_tensor_value_info("x_copy", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def passthrough() -> ort.InferenceSession:
    return ort.InferenceSession(passthrough_model().SerializeToString())


@pytest.mark.parametrize(
    "strings",
    [np.array(["ab", "c"]), np.array([b"ab", b"c"]), np.array(["ab", b"c"], dtype=object), ["ab", "c"]],
    ids=["str_", "bytes_", "object", "list"],
)
def test_string_feeds_in_every_form(passthrough, strings) -> None:
    x = np.zeros((2, 3), np.float32)
    s_out, n_out, _, _ = passthrough.run(None, {"s": strings, "n": 4, "x": x})
    assert s_out.dtype == object and list(s_out) == ["ab", "c"]
    assert n_out.dtype == np.int64 and n_out.shape == () and int(n_out) == 4


def test_lists_scalars_and_strided_arrays_take_the_declared_type(passthrough) -> None:
    strided = np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2]
    assert not strided.flags.c_contiguous
    _, n_out, x_copy, _ = passthrough.run(None, {"s": ["a"], "n": np.int32(7).item(), "x": strided})
    np.testing.assert_array_equal(x_copy, strided)
    _, _, from_list, _ = passthrough.run(None, {"s": ["a"], "n": 1, "x": [[1, 2, 3], [4, 5, 6]]})
    assert from_list.dtype == np.float32 and from_list[1, 2] == 6
    with pytest.raises(ort.InvalidArgument, match="element 0 is a int, not a string"):
        passthrough.run(None, {"s": np.array([1], dtype=object), "n": 1, "x": strided})
    with pytest.raises(ort.InvalidArgument, match="not UTF-8"):
        passthrough.run(None, {"s": np.array([b"\xff"]), "n": 1, "x": strided})


def test_outputs_never_alias_the_callers_inputs(passthrough) -> None:
    x = np.ones((2, 3), np.float32)
    _, _, x_copy, x_out = passthrough.run(None, {"s": ["a"], "n": 1, "x": x})
    assert not np.shares_memory(x_out, x) and not np.shares_memory(x_copy, x)
    x_out[0, 0] = 9.0
    assert x[0, 0] == 1.0


def test_node_arg_types_are_spelt_as_in_onnxruntime() -> None:
    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    zipmap_out = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        [
            helper.make_node("SequenceLength", ["s"], ["n"]),
            helper.make_node("OptionalHasElement", ["o"], ["h"]),
            helper.make_node("ZipMap", ["p"], ["z"], domain="ai.onnx.ml", classlabels_strings=["a", "b"]),
        ],
        "types",
        [
            helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None),
            helper.make_value_info("o", optional),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 2]),
        ],
        [
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
            helper.make_tensor_value_info("h", TensorProto.BOOL, []),
            helper.make_value_info("z", zipmap_out),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    sess = ort.InferenceSession(model.SerializeToString())
    assert [(i.type, i.shape) for i in sess.get_inputs()] == [
        ("seq(tensor(float))", []), ("optional(tensor(float))", [2]), ("tensor(float)", [1, 2])
    ]
    assert sess.get_outputs()[2].type == "seq(map(string,tensor(float)))"
    n, h, z = sess.run(None, {"s": [np.ones(2, np.float32)], "o": np.ones(2, np.float32), "p": [[0.25, 0.75]]})
    assert (int(n), bool(h), z) == (1, True, [{"a": 0.25, "b": 0.75}])


def test_error_texts_carry_onnxruntime_wording(session) -> None:
    cases = [
        ({}, None, "Required inputs (['x']) are missing from input feed ([])."),
        ({"x": X, "q": X}, None, "Invalid input name: q"),
        ({"x": X}, ["nope"], "Invalid output name:nope"),
        ({"x": X[0]}, None, "Invalid rank for input: x Got: 1 Expected: 2"),
        ({"x": X.astype(np.float64)}, None, "Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))"),
    ]
    for feed, outputs, wording in cases:
        with pytest.raises(ort.InvalidArgument) as info:
            session.run(outputs, feed)
        assert wording in str(info.value)


# -- 9. optimized models with external data ------------------------------------------------------
def test_saving_an_optimized_model_whose_weights_are_external(tmp_path) -> None:
    onnx.save(affine_relu_model(), str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), options)  # raised BufferError while the plan held the weights
    expected = affine_relu_reference(X)
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], expected, rtol=1e-6)
    assert (tmp_path / "opt.onnx.data").exists()
    np.testing.assert_allclose(ort.InferenceSession(str(tmp_path / "opt.onnx")).run(None, {"x": X})[0], expected, rtol=1e-6)

    named = ort.SessionOptions()
    named.optimized_model_filepath = str(tmp_path / "named.onnx")
    named.add_session_config_entry("session.optimized_model_external_initializers_file_name", "named_weights.bin")
    named.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "0")
    ort.InferenceSession(affine_relu_model().SerializeToString(), named)
    saved = onnx.load(str(tmp_path / "named.onnx"), load_external_data=False)
    locations = {e.value for t in saved.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"named_weights.bin"}
    reference = onnxruntime.InferenceSession(str(tmp_path / "named.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(reference.run(None, {"x": X})[0], expected, rtol=1e-6)
