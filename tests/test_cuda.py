"""The CUDA provider: options, availability reasons, kernel table and selection, device copies,
CUDA-graph fallbacks and the shared kernels' logic, all without a GPU; then, on a machine with
one, every hand-written CuPy kernel against the CPU provider.

Without a GPU the provider runs on ``FakeCuPy`` (tests/cuda_fake.py): its own code is real,
CuPy is numpy and the device is host memory, and its table leaves out the hand-written CuPy
kernels. The tests marked ``requires_cuda`` skip here with the exact reason.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.conformance import load_expected_failures, node_cases, run_case
from onnxmux.core.device_values import element_dtype, is_device_array
from onnxmux.core.registry import KernelRegistry
from onnxmux.providers.cuda import CUDAExecutionProvider, availability
from onnxmux.providers.cuda.device import CUDARuntime
from onnxmux.providers.cuda.graphs import CUDAGraphPlan
from onnxmux.providers.cuda.options import CUDASettings
from onnxmux.providers.cuda.table import build_registry

from cuda_fake import (
    STRICT_SPECIAL, DeviceArray, FakeCuPy, FakeOutOfMemory, HostCUDAProvider, StrictCUDAProvider, using_cupy,
)
from helpers import affine_relu_model

onnxmux.register_provider(HostCUDAProvider)
onnxmux.register_provider(StrictCUDAProvider)
HOST_CUDA = HostCUDAProvider.name
STRICT_CUDA = StrictCUDAProvider.name
REASON = CUDAExecutionProvider.unavailable_reason()
requires_cuda = pytest.mark.skipif(REASON is not None, reason=f"CUDA is not usable here: {REASON}")
RNG = np.random.default_rng(12)
#: Node tests the CPU provider alone fails (the conformance test's list).
CPU_FAILURES = load_expected_failures(Path(__file__).with_name("expected_failures.txt"))


def _model(nodes, inputs, outputs, initializers=(), opset=18) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model.SerializeToString()


def _tensor(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# -- options ----------------------------------------------------------------------------------


def test_options_take_onnxruntime_names_and_string_values() -> None:
    parsed = CUDAExecutionProvider.parse_options({
        "device_id": "1",
        "gpu_mem_limit": str(2 << 30),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "1",
        "enable_cuda_graph": "1",
        "do_copy_in_default_stream": False,
    })
    settings = CUDASettings.from_options(parsed)
    assert settings == CUDASettings(1, 2 << 30, "kSameAsRequested", "HEURISTIC", True, False)
    assert CUDASettings.from_options({}) == CUDASettings(0, None, "kNextPowerOfTwo", "EXHAUSTIVE", False, True)


@pytest.mark.parametrize(
    "option, value",
    [
        ("device_id", "-1"),
        ("device_id", "gpu"),
        ("gpu_mem_limit", "0"),
        ("arena_extend_strategy", "kDouble"),
        ("cudnn_conv_algo_search", "FASTEST"),
        ("enable_cuda_graph", "maybe"),
        ("do_copy_in_default_stream", 2),
    ],
)
def test_bad_option_values_name_the_option(option: str, value) -> None:
    with pytest.raises(onnxmux.InvalidArgument, match=f"option '{option}' has an invalid value"):
        CUDAExecutionProvider.parse_options({option: value})


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(onnxmux.InvalidArgument, match="unknown option 'gpu_id'.*device_id"):
        CUDAExecutionProvider.parse_options({"gpu_id": 0})


def test_memory_limit_goes_to_the_pool_and_device_id_is_checked() -> None:
    fake = FakeCuPy(devices=2)
    with using_cupy(fake):
        runtime = CUDARuntime(CUDASettings(device_id=1, gpu_mem_limit=1 << 20))
        assert (runtime.name, fake.pool.limit) == ("cuda:1", 1 << 20)
        with pytest.raises(onnxmux.InvalidArgument, match="'device_id' is 2, but this machine has 2 CUDA devices"):
            CUDARuntime(CUDASettings(device_id=2))


def test_bad_device_id_fails_at_session_creation() -> None:
    with pytest.raises(onnxmux.InvalidArgument, match="'device_id' is 3, but this machine has 1 CUDA device "):
        onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=[("cuda-host", {"device_id": 3})])


# -- availability -----------------------------------------------------------------------------


@pytest.fixture
def fresh_reason():
    """The cached availability check, cleared before and after the test."""
    availability.unavailable_reason.cache_clear()
    yield availability.unavailable_reason
    availability.unavailable_reason.cache_clear()


def test_reason_when_cupy_is_missing(monkeypatch, fresh_reason) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    reason = fresh_reason()
    assert reason.startswith("CuPy is not installed") and "onnxmux[cuda]" in reason and "onnxmux[cuda12]" in reason


@pytest.mark.parametrize(
    "fake, expected",
    [
        (FakeCuPy(error=35, driver=0), "no CUDA device found: the NVIDIA driver (libcuda) is not installed"),
        (FakeCuPy(error=100), "no CUDA device found (cudaErrorNoDevice)"),
        (FakeCuPy(devices=0), "no CUDA device found"),
        (FakeCuPy(error=35, driver=12040, toolkit=13020),
         "driver/toolkit mismatch: the NVIDIA driver supports CUDA 12.4, but CuPy 0.0-fake is built for CUDA 13.2"),
        (FakeCuPy(error=999), "CUDA could not be initialised: CUDA error 999"),
    ],
)
def test_reason_from_the_cuda_runtime(monkeypatch, fresh_reason, fake, expected) -> None:
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert fresh_reason().startswith(expected)


def test_installed_cupy_without_a_gpu_says_so(fresh_reason) -> None:
    pytest.importorskip("cupy")
    reason = fresh_reason()
    if reason is None:
        pytest.skip("a CUDA device is present")
    assert reason.startswith(("no CUDA device found", "driver/toolkit mismatch"))


def test_importing_onnxmux_and_listing_providers_does_not_import_cupy() -> None:
    code = (
        "import sys, onnxmux\n"
        "import onnxmux.providers.cuda\n"
        "onnxmux.get_all_providers()\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_providers_command_shows_the_cuda_row_with_its_reason(capsys, monkeypatch) -> None:
    from onnxmux.cli import main

    monkeypatch.setenv("COLUMNS", "400")
    assert main(["providers"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "CUDAExecutionProvider" in text and "cuda:0" in text
    if REASON is not None:
        words = " ".join(REASON.split()[:3])
        assert "unavailable" in text and words in text


@pytest.mark.skipif(REASON is None, reason="CUDA is usable here")
def test_session_naming_cuda_warns_and_falls_back() -> None:
    model = affine_relu_model().SerializeToString()
    with pytest.warns(UserWarning, match="CUDAExecutionProvider is not available and is skipped: " + REASON[:20]):
        session = onnxmux.InferenceSession(model, providers=["cuda", "cpu"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    options = onnxmux.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with warnings.catch_warnings(), pytest.raises(onnxmux.UnsupportedOperator):
        warnings.simplefilter("ignore")
        onnxmux.InferenceSession(model, options, providers=["cuda"])


# -- kernel table and selection ---------------------------------------------------------------


def test_table_has_cupy_kernels_over_shared_ones_and_no_host_only_ops() -> None:
    table = CUDAExecutionProvider.registry
    for op_type, domain in [("Conv", ""), ("Softmax", ""), ("LayerNormalization", ""), ("Gelu", ""),
                            ("FusedGemm", "com.onnxmux"), ("FusedAttention", "com.onnxmux"), ("FusedConv", "com.onnxmux")]:
        kernel = table.lookup(domain, op_type, 99)
        assert kernel.factory.__module__.startswith("onnxmux.providers.cuda.kernels."), op_type
    assert table.lookup("", "Add", 18).factory.__module__ == "onnxmux.providers.cpu.ops.binary_math"
    for op_type, domain in [("Loop", ""), ("SequenceAt", ""), ("RandomNormal", ""), ("StringNormalizer", ""),
                            ("LabelEncoder", "ai.onnx.ml"), ("Unique", "")]:
        assert table.lookup(domain, op_type, 99) is None, op_type
    shared = build_registry(cupy_kernels=False)
    assert shared.lookup("", "Conv", 22).factory.__module__ == "onnxmux.providers.cpu.ops.conv"
    assert set(shared.ops()) == set(table.ops())


def test_nodes_the_gpu_cannot_hold_stay_on_the_cpu() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Cast", ["r"], ["s"], name="to_string", to=TensorProto.STRING),
        helper.make_node("Cast", ["r"], ["b"], name="to_bf16", to=TensorProto.BFLOAT16),
        helper.make_node("Cast", ["b"], ["y"], name="from_bf16", to=TensorProto.FLOAT),
    ]
    model = _model(nodes, [_tensor("x", [2, 3])], [_tensor("s", [2, 3], TensorProto.STRING), _tensor("y", [2, 3])])
    session = onnxmux.InferenceSession(model, providers=["cuda-host", "cpu"])
    placed = {n["name"]: n["provider"] for n in session.get_execution_plan().nodes}
    assert placed == {"relu": HOST_CUDA, "to_string": "CPUExecutionProvider",
                      "to_bf16": "CPUExecutionProvider", "from_bf16": "CPUExecutionProvider"}
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    s, y = session.run(None, {"x": x})
    expected = onnxmux.InferenceSession(model, providers=["cpu"]).run(None, {"x": x})
    np.testing.assert_array_equal(s, expected[0])
    np.testing.assert_array_equal(y, expected[1])


def test_shape_inputs_stay_on_the_host() -> None:
    shape = numpy_helper.from_array(np.array([3, 2], np.int64), "shape")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape")]
    model = _model(nodes, [_tensor("x", [2, 3])], [_tensor("y", [3, 2])], [shape])
    session = onnxmux.InferenceSession(model, providers=["cuda-strict"])
    runtime = session._providers[0].runtime
    assert CUDAExecutionProvider.registry.lookup("", "Reshape", 18).host_inputs == (1,)
    assert [(c.value, c.target) for c in session.get_execution_plan().copies] == [("x", "cuda:0"), ("y", "cpu")]
    assert runtime.uploads == 0  # the constant shape was not uploaded
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0).reshape(3, 2))


def test_fusions_run_on_the_provider_at_level_all() -> None:
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    model = _model(nodes, [_tensor("x", [1, 3, 8, 8])], [_tensor("y", [1, 4, 8, 8])], [w, b])
    session = onnxmux.InferenceSession(model, providers=["cuda-host", "cpu"])
    plan = session.get_execution_plan()
    assert [(n["op_type"], n["provider"]) for n in plan.nodes] == [("FusedConv", HOST_CUDA)]
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0],
                               onnxmux.InferenceSession(model, providers=["cpu"]).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


# -- device copies, DLPack, out of memory -----------------------------------------------------


def test_copies_match_the_device_crossings_and_device_feeds_are_not_copied() -> None:
    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=["cuda-host"])
    runtime = session._providers[0].runtime
    copies = session.get_execution_plan().to_dict()["copies"]
    assert copies == [{"value": "x", "from": "cpu", "to": "cuda:0"}, {"value": "y", "from": "cuda:0", "to": "cpu"}]
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    before = (runtime.uploads, runtime.downloads)
    (y,) = session.run(None, {"x": x})
    assert (runtime.uploads - before[0], runtime.downloads - before[1]) == (1, 1)
    (again,) = session.run(None, {"x": x.view(DeviceArray)})  # already on the device: no upload
    assert (runtime.uploads - before[0], runtime.downloads - before[1]) == (1, 2)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, again)


class _ForeignGPUArray:
    """What a PyTorch CUDA tensor shows the session: DLPack on a CUDA device, a torch dtype name."""

    __dlpack_device__ = staticmethod(lambda: (2, 0))
    dtype = "torch.float32"
    shape = (2, 3)


def test_dlpack_gpu_arrays_are_recognised_as_device_feeds() -> None:
    assert is_device_array(_ForeignGPUArray()) and element_dtype(_ForeignGPUArray()) == np.float32
    assert not is_device_array(np.zeros(2)) and not is_device_array([1.0])
    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=["cpu"])
    bad = _ForeignGPUArray()
    bad.dtype = "torch.int64"
    with pytest.raises(onnxmux.InvalidArgument, match=r"expected tensor\(float\), got tensor\(int64\)"):
        session.run(None, {"x": bad})


def _copy(source: KernelRegistry) -> KernelRegistry:
    copy = KernelRegistry()
    for domain, op_type in source.ops():
        for since in source.versions(domain, op_type):
            copy.add(source.lookup(domain, op_type, since))
    return copy


class _OOMOnBigRelu(HostCUDAProvider):
    """Relu asks for more memory than the device has when its input is over 100 elements."""

    name = "OOMTestExecutionProvider"
    aliases = ("oom-test",)
    registry = _copy(HostCUDAProvider.registry)

    @registry.register("Relu", 14)
    def relu(ctx, xp):
        def run(x):
            if x.size > 100:
                raise FakeOutOfMemory(x.nbytes * 1000, 0)
            return xp.maximum(x, 0)

        return run


def test_out_of_memory_names_the_node_and_bytes_and_the_session_recovers() -> None:
    onnxmux.register_provider(_OOMOnBigRelu)
    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=["oom-test"])
    pool = session._providers[0].runtime.pool
    emptied = pool.emptied
    with pytest.raises(onnxmux.RuntimeFailure, match=r"node 'relu'.*ran out of GPU memory: 408,000 bytes asked"):
        session.run(None, {"x": np.ones((34, 3), np.float32)})
    assert pool.emptied == emptied + 1
    (y,) = session.run(None, {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(y, onnxmux.InferenceSession(affine_relu_model().SerializeToString()).run(None, {"x": np.ones((2, 3), np.float32)})[0])


# -- CUDA graphs: when capture is refused, and that the run still works ------------------------


def _graph_session(model: bytes) -> onnxmux.InferenceSession:
    return onnxmux.InferenceSession(model, providers=[("cuda-host", {"enable_cuda_graph": "1"}), "cpu"])


def test_cuda_graph_is_refused_with_a_host_node_and_the_reason_logged_once(caplog) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["b"], name="to_bf16", to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["b"], ["y"], name="from_bf16", to=TensorProto.FLOAT)]
    model = _model(nodes, [_tensor("x", [2, 3])], [_tensor("y", [2, 3])])
    session = _graph_session(model)
    assert isinstance(session._plan, CUDAGraphPlan)
    assert session._plan.blocker == "node 'to_bf16' (Cast, ai.onnx, opset 18) on CPUExecutionProvider: a node off the GPU"
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        for _ in range(3):
            (y,) = session.run(None, {"x": x})
    assert len([r for r in caplog.records if "CUDA graph not used" in r.getMessage()]) == 1
    np.testing.assert_allclose(y, np.maximum(x, 0).astype(np.float32), rtol=1e-2)


def test_cuda_graph_capture_failure_falls_back_per_signature(caplog) -> None:
    session = _graph_session(affine_relu_model().SerializeToString())
    assert session._plan.blocker is None  # every node on the device: capture is attempted
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="onnxmux"):
        results = [session.run(None, {"x": x})[0] for _ in range(3)]
    # FakeCuPy's streams cannot capture: the failure is recorded for the signature and logged once.
    messages = [r.getMessage() for r in caplog.records if "CUDA graph not used" in r.getMessage()]
    assert len(messages) == 1 and "capture failed" in messages[0]
    for y in results:
        np.testing.assert_array_equal(y, results[0])


def test_cuda_graph_is_not_used_with_parallel_execution() -> None:
    options = onnxmux.SessionOptions()
    options.execution_mode = onnxmux.ExecutionMode.ORT_PARALLEL
    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), options,
                                       providers=[("cuda-host", {"enable_cuda_graph": True})])
    assert "ParallelPlan" in session._plan.blocker


# -- the shared kernels, run by the CUDA provider's code on numpy -----------------------------
#
# On StrictCUDAProvider the device arrays refuse what CuPy's refuse (np.asarray on them, host
# arrays mixed into their operations), so a shared kernel that is not xp-clean fails here.

#: The ops most models use; every 5th of their ONNX node tests is run (the whole suite is the GPU check's).
SLICE_OPS = ("conv", "gemm", "matmul", "relu", "sigmoid", "softmax", "layer_norm", "add", "mul", "sub", "div",
             "reshape", "transpose", "concat", "gather", "scatter", "slice", "reduce", "batchnorm", "pool", "split",
             "squeeze", "unsqueeze", "where", "cast", "expand", "pad", "resize", "clip", "pow", "sqrt", "attention",
             "constantofshape", "range", "cumsum", "topk", "erf", "gelu")


@pytest.fixture
def strict_cupyx(monkeypatch):
    """Erf takes CuPy's erf (``cupyx.scipy.special``) for device arrays: the strict stand-in's here."""
    monkeypatch.setitem(sys.modules, "cupyx.scipy.special", STRICT_SPECIAL)


def _slice() -> list:
    return [c for c in node_cases() if any(op in c.name for op in SLICE_OPS) and c.name not in CPU_FAILURES][::10]


def test_node_suite_slice_passes_on_strict_device_arrays(strict_cupyx) -> None:
    ran_on_device = all_on_device = 0
    failures = []
    cases = _slice()
    for case in cases:
        result = run_case(case, ["cuda-strict", "cpu"])
        if not result.passed:
            failures.append(f"{case.name}: {result.reason}")
        ran_on_device += STRICT_CUDA in result.placement
        all_on_device += set(result.placement) == {STRICT_CUDA}
    assert not failures, "\n".join(failures)
    assert len(cases) > 100 and all_on_device > 0.8 * len(cases) and ran_on_device >= all_on_device


def _torch_models():
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common, models

    return common, models


@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_torch_models_run_with_no_cpu_node(name: str, strict_cupyx) -> None:
    common, models = _torch_models()
    path = str(models.MODELS[name]("dynamo"))
    session = onnxmux.InferenceSession(path, providers=["cuda-strict", "cpu"])
    plan = session.get_execution_plan()
    assert {n["provider"] for n in plan.nodes} == {STRICT_CUDA}
    # every device crossing is a copy of the plan, made once per run: inputs up, outputs down, and
    # int64 shapes computed on the device read back by Reshape/Expand (constant shapes stay on the host)
    io = {a.name for a in session.get_inputs() + session.get_outputs()}
    assert all(c.value in io or (c.source, c.target) == ("cuda:0", "cpu") for c in plan.copies)
    runtime = session._providers[0].runtime
    before = runtime.uploads + runtime.downloads
    feeds = common.make_feeds(name, batch=2, seq=16)
    (got,) = session.run(None, feeds)
    assert runtime.uploads + runtime.downloads - before == len(plan.copies)
    (expected,) = onnxmux.InferenceSession(path, providers=["cpu"]).run(None, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# -- on a GPU: the hand-written kernels against the CPU provider -------------------------------


def _both(model: bytes, feeds: dict, options=None) -> tuple[list, list, onnxmux.InferenceSession]:
    session = onnxmux.InferenceSession(model, providers=[("cuda", options or {}), "cpu"])
    got = session.run(None, feeds)
    expected = onnxmux.InferenceSession(model, providers=["cpu"]).run(None, feeds)
    return got, expected, session


def _cuda_kernel_ran(session: onnxmux.InferenceSession, op_type: str) -> bool:
    return any(n["op_type"] == op_type and n["provider"] == "CUDAExecutionProvider" for n in session.get_execution_plan().nodes)


@requires_cuda
@pytest.mark.parametrize("group, stride, pads, dilation", [(1, 1, 1, 1), (2, 2, 0, 1), (1, 2, 3, 2), (4, 1, 1, 1)])
def test_gpu_conv_bias_relu(group: int, stride: int, pads: int, dilation: int) -> None:
    w = numpy_helper.from_array(RNG.standard_normal((8, 8 // group, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal(8).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group, strides=[stride] * 2,
                              pads=[pads] * 4, dilations=[dilation] * 2),
             helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, [_tensor("x", [2, 8, 15, 15])], [_tensor("y", None)], [w, b])
    x = RNG.standard_normal((2, 8, 15, 15)).astype(np.float32)
    got, expected, session = _both(model, {"x": x})
    assert _cuda_kernel_ran(session, "FusedConv")
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4)


@requires_cuda
@pytest.mark.parametrize("op_type, attrs", [("Softmax", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"})])
def test_gpu_row_and_elementwise_kernels(op_type: str, attrs: dict) -> None:
    model = _model([helper.make_node(op_type, ["x"], ["y"], **attrs)], [_tensor("x", [4, 7, 300])], [_tensor("y", None)], opset=20)
    x = (RNG.standard_normal((4, 7, 300)) * 4).astype(np.float32)
    got, expected, session = _both(model, {"x": x})
    assert _cuda_kernel_ran(session, op_type)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)


@requires_cuda
def test_gpu_layer_norm() -> None:
    scale = numpy_helper.from_array(RNG.standard_normal(96).astype(np.float32), "s")
    bias = numpy_helper.from_array(RNG.standard_normal(96).astype(np.float32), "b")
    model = _model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)],
                   [_tensor("x", [3, 5, 96])], [_tensor("y", None)], [scale, bias])
    x = RNG.standard_normal((3, 5, 96)).astype(np.float32) * 3 + 1
    got, expected, session = _both(model, {"x": x})
    assert _cuda_kernel_ran(session, "LayerNormalization")
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)


@requires_cuda
@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_gpu_torch_models_match_the_cpu_with_and_without_graphs(name: str) -> None:
    common, models = _torch_models()
    path = str(models.MODELS[name]("dynamo"))
    feeds = common.make_feeds(name, batch=2, seq=16)
    (expected,) = onnxmux.InferenceSession(path, providers=["cpu"]).run(None, feeds)
    for options in ({}, {"enable_cuda_graph": "1"}):
        session = onnxmux.InferenceSession(path, providers=[("cuda", options), "cpu"])
        assert {n["provider"] for n in session.get_execution_plan().nodes} == {"CUDAExecutionProvider"}
        for _ in range(3):  # the graph is captured after the first run, replayed from the second
            (got,) = session.run(None, feeds)
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


@requires_cuda
def test_gpu_runs_from_threads_match_a_single_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=["cuda"])
    inputs = [RNG.standard_normal((1000, 3)).astype(np.float32) for _ in range(16)]
    single = [session.run(None, {"x": x})[0] for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda x: session.run(None, {"x": x})[0], inputs))
    for a, b in zip(single, threaded):
        np.testing.assert_array_equal(a, b)


@requires_cuda
def test_gpu_feeds_from_cupy_and_torch_are_not_copied() -> None:
    import cupy

    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=["cuda"])
    runtime = session._providers[0].runtime
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    (expected,) = session.run(None, {"x": x})
    uploads = runtime.uploads
    (from_cupy,) = session.run(None, {"x": cupy.asarray(x)})
    feeds = [from_cupy]
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        (from_torch,) = session.run(None, {"x": torch.from_numpy(x).cuda()})
        feeds.append(from_torch)
    assert runtime.uploads == uploads
    for got in feeds:
        np.testing.assert_array_equal(got, expected)


@requires_cuda
def test_gpu_out_of_memory_names_the_node_and_the_session_recovers() -> None:
    session = onnxmux.InferenceSession(affine_relu_model().SerializeToString(),
                                       providers=[("cuda", {"gpu_mem_limit": str(64 << 20)})])
    with pytest.raises(onnxmux.RuntimeFailure, match=r"ran out of GPU memory: [\d,]+ bytes asked"):
        session.run(None, {"x": np.ones((16 << 20, 3), np.float32)})
    (y,) = session.run(None, {"x": np.ones((2, 3), np.float32)})
    assert y.shape == (2, 3)


@requires_cuda
def test_gpu_bad_device_id() -> None:
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    with pytest.raises(onnxmux.InvalidArgument, match=f"'device_id' is {count}"):
        onnxmux.InferenceSession(affine_relu_model().SerializeToString(), providers=[("cuda", {"device_id": count})])


# -- the CUDA source of the hand-written kernels compiles (NVRTC, no GPU needed) ---------------

_C_TYPES = {"T": "T", "float32": "float", "int32": "int"}


def _plain_kernel(in_params: str, out_params: str, body: str, name: str) -> str:
    """An elementwise kernel definition written as a plain CUDA kernel over ``i``, with T = float."""
    args, locals_ = ["long long _n"], []
    for param in [p.strip() for p in in_params.split(",")] + [p.strip() for p in out_params.split(",")]:
        words = param.split()
        raw_, ctype, pname = words[0] == "raw", _C_TYPES[words[-2]], words[-1]
        output = param in out_params
        if raw_:
            args.append(f"const {ctype}* {pname}")
        elif ctype == "T":
            args.append(f"{ctype}* {pname}_p")
            locals_.append(f"{ctype}& {pname} = {pname}_p[i];" if output else f"const {ctype} {pname} = {pname}_p[i];")
        else:
            args.append(f"{ctype} {pname}")
    return (f"typedef float T;\nextern \"C\" __global__ void {name}({', '.join(args)}) {{\n"
            f"  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n  if (i >= _n) return;\n"
            f"  {' '.join(locals_)}\n{body}\n}}\n")


def test_hand_written_kernels_compile_with_nvrtc() -> None:
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    from onnxmux.providers.cuda.kernels import raw

    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC is not installed: {exc}")
    sources = {spec[3]: _plain_kernel(*spec) for spec in raw.elementwise_specs()}
    errors = []
    for name, source in {**sources, **raw.RAW_SOURCES}.items():
        program = nvrtc.createProgram(source, f"{name}.cu", [], [])
        try:
            nvrtc.compileProgram(program, ["-arch=compute_90"])
        except Exception:
            errors.append(f"{name}:\n{nvrtc.getProgramLog(program)}")
    assert not errors, "\n".join(errors)
