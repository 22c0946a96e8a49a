"""The OpenVINO execution provider: options, capability, compilation, fallback, real models.

Skipped where the ``openvino`` package is not installed (``pip install onnxmux[openvino]``).
The node-suite comparison runs every ONNX node test twice (CPU alone, then OpenVINO first),
which takes a few minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh

pytest.importorskip("openvino")

import onnxmux  # noqa: E402
from onnxmux.conformance import compare, node_cases, run_case  # noqa: E402
from onnxmux.providers.openvino import OpenVINOExecutionProvider  # noqa: E402

OV = "OpenVINOExecutionProvider"


def make_model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),), value_info=()) -> bytes:
    """A serialized model from helper-made parts."""
    graph = oh.make_graph(nodes, "g", inputs, outputs, list(initializers), value_info=list(value_info))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets], ir_version=9)
    return model.SerializeToString()


def mlp_model() -> bytes:
    """x[N,4] -> Gemm -> Relu -> Softmax, with a symbolic batch dimension."""
    rng = np.random.default_rng(0)
    return make_model(
        [
            oh.make_node("Gemm", ["x", "w", "b"], ["h"], name="gemm", transB=1),
            oh.make_node("Relu", ["h"], ["r"], name="relu"),
            oh.make_node("Softmax", ["r"], ["y"], name="softmax"),
        ],
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [
            onnx.numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w"),
            onnx.numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b"),
        ],
    )


def plan_of(session: onnxmux.InferenceSession) -> dict:
    """The session's execution plan in its documented form."""
    return session.get_execution_plan().to_dict()


def providers_of(session: onnxmux.InferenceSession) -> dict[str, str]:
    """Each node's provider, by node name."""
    return {n["name"]: n["provider"] for n in plan_of(session)["nodes"]}


def cpu_run(model: bytes, feeds: dict) -> list:
    return onnxmux.InferenceSession(model, providers=["cpu"]).run(None, feeds)


# -- discovery and options ----------------------------------------------------------------


def test_importing_onnxmux_and_discovering_does_not_import_openvino() -> None:
    code = (
        "import sys, onnxmux\n"
        "from onnxmux.core import discovery\n"
        "entry = discovery.find('openvino')\n"
        "assert entry is not None and entry.cls is not None\n"
        "print('openvino' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unavailable_reason_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OpenVINOExecutionProvider.unavailable_reason() is None
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    reason = OpenVINOExecutionProvider.unavailable_reason()
    assert reason is not None and "openvino" in reason


def test_options_parse_strings_as_onnxruntime_passes_them() -> None:
    provider = OpenVINOExecutionProvider(
        {"device_type": "cpu", "precision": "bf16", "num_of_threads": "2", "num_streams": "1", "disable_dynamic_shapes": "True"}
    )
    settings = provider.settings
    assert (settings.device_type, settings.precision, settings.num_of_threads, settings.num_streams) == ("CPU", "BF16", 2, 1)
    assert settings.disable_dynamic_shapes is True
    assert provider.config["INFERENCE_PRECISION_HINT"] == "bf16"
    assert provider.config["INFERENCE_NUM_THREADS"] == 2


@pytest.mark.parametrize("precision, hint", [(None, "f32"), ("FP32", "f32"), ("ACCURACY", "f32"), ("FP16", "f16")])
def test_precision_sets_the_inference_precision_hint(precision: str | None, hint: str) -> None:
    options = {} if precision is None else {"precision": precision}
    assert OpenVINOExecutionProvider(options).config["INFERENCE_PRECISION_HINT"] == hint


@pytest.mark.parametrize(
    "options, message",
    [
        ({"device_type": "TPU"}, "'device_type'"),
        ({"device_type": "AUTO:CPU,XPU"}, "'device_type'"),
        ({"precision": "INT3"}, "'precision'"),
        ({"num_of_threads": "0"}, "'num_of_threads'"),
        ({"disable_dynamic_shapes": "maybe"}, "'disable_dynamic_shapes'"),
        ({"enable_magic": "1"}, "unknown option 'enable_magic'"),
    ],
)
def test_bad_options_raise_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(onnxmux.InvalidArgument, match=message):
        onnxmux.InferenceSession(mlp_model(), providers=[("openvino", options), "cpu"])


def test_auto_device_runs() -> None:
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    session = onnxmux.InferenceSession(mlp_model(), providers=[("openvino", {"device_type": "AUTO"}), "cpu"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], cpu_run(mlp_model(), {"x": x})[0], rtol=1e-5, atol=1e-6)


# -- capability, plan and explanations -----------------------------------------------------


def test_whole_float_graph_is_one_openvino_partition() -> None:
    session = onnxmux.InferenceSession(mlp_model(), providers=["openvino", "cpu"])
    partitions = plan_of(session)["partitions"]
    assert [(p["provider"], p["kind"], len(p["nodes"])) for p in partitions] == [(OV, "compiled", 3)]
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], cpu_run(mlp_model(), {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_unsupported_nodes_stay_on_the_cpu_with_a_reason() -> None:
    model = make_model(
        [
            oh.make_node("Add", ["x", "x"], ["a"], name="add"),
            oh.make_node("SequenceConstruct", ["a", "a"], ["seq"], name="make_seq"),
            oh.make_node("ConcatFromSequence", ["seq"], ["c"], name="concat", axis=0),
            oh.make_node("Binarizer", ["c"], ["bin"], name="binarize", domain="ai.onnx.ml", threshold=0.0),
            oh.make_node("Relu", ["bin"], ["y"], name="relu"),
            oh.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),
        ],
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None), oh.make_tensor_value_info("i", TensorProto.INT64, None)],
        [onnx.numpy_helper.from_array(np.array([2], np.int64), "k")],
        opsets=(("", 17), ("ai.onnx.ml", 3)),
    )
    session = onnxmux.InferenceSession(model, providers=["openvino", "cpu"])
    owners = providers_of(session)
    assert owners["add"] == OV and owners["relu"] == OV
    assert {owners[n] for n in ("make_seq", "concat", "binarize", "topk")} == {"CPUExecutionProvider"}
    declined = session.get_execution_plan().declined
    assert "not a tensor" in declined["make_seq"][OV]
    assert "cannot convert" in declined["binarize"][OV]
    assert "equal values" in declined["topk"][OV]
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    for got, want in zip(session.run(None, {"x": x}), cpu_run(model, {"x": x})):
        np.testing.assert_array_equal(got, want)


def test_plan_command_shows_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(
        make_model(
            [oh.make_node("Relu", ["x"], ["r"], name="relu"), oh.make_node("TopK", ["r", "k"], ["v", "i"], name="topk")],
            [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
            [oh.make_tensor_value_info("v", TensorProto.FLOAT, None), oh.make_tensor_value_info("i", TensorProto.INT64, None)],
            [onnx.numpy_helper.from_array(np.array([2], np.int64), "k")],
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "onnxmux.cli", "plan", str(path), "--providers", "openvino,cpu"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "equal values" in " ".join(out.stdout.split())


def test_outputs_have_the_onnx_element_types() -> None:
    model = make_model(
        [
            oh.make_node("Cast", ["x"], ["h"], name="to_half", to=TensorProto.FLOAT16),
            oh.make_node("Cast", ["x"], ["l"], name="to_long", to=TensorProto.INT64),
            oh.make_node("Mul", ["l", "l"], ["sq"], name="square"),
            oh.make_node("Greater", ["x", "zero"], ["positive"], name="positive"),
        ],
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [
            oh.make_tensor_value_info("h", TensorProto.FLOAT16, [3]),
            oh.make_tensor_value_info("sq", TensorProto.INT64, [3]),
            oh.make_tensor_value_info("positive", TensorProto.BOOL, [3]),
        ],
        [onnx.numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    session = onnxmux.InferenceSession(model, providers=["openvino", "cpu"])
    assert set(providers_of(session).values()) == {OV}
    x = np.array([1.5, -2.0, 3.0e4], np.float32)
    got = session.run(None, {"x": x})
    assert [g.dtype for g in got] == [np.float16, np.int64, np.bool_]
    for g, want in zip(got, cpu_run(model, {"x": x})):
        np.testing.assert_array_equal(g, want)


# -- compilation ---------------------------------------------------------------------------


class ClaimEverything(OpenVINOExecutionProvider):
    """Claims every candidate, so that OpenVINO is asked to compile a node it cannot read."""

    name = "ClaimEverythingOpenVINOExecutionProvider"
    aliases = ("openvino-claim-all",)

    def claim(self, graph, candidates):
        return [list(candidates)]


def test_a_subgraph_that_fails_to_compile_falls_back_with_a_warning() -> None:
    onnxmux.register_provider(ClaimEverything)
    model = make_model(
        [
            oh.make_node("Add", ["x", "x"], ["a"], name="add"),
            oh.make_node("Binarizer", ["a"], ["y"], name="binarize", domain="ai.onnx.ml", threshold=1.0),
        ],
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        opsets=(("", 17), ("ai.onnx.ml", 3)),
    )
    with pytest.warns(UserWarning, match=r"(?s)\.compile raised .*for 2 nodes.*fall back to the next provider"):
        session = onnxmux.InferenceSession(model, providers=["openvino-claim-all", "cpu"])
    assert set(providers_of(session).values()) == {"CPUExecutionProvider"}
    declined = session.get_execution_plan().declined
    assert declined["binarize"][ClaimEverything.name].startswith("compile raised")
    x = np.array([0.0, 0.4, 0.6, 2.0], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], [0, 0, 1, 1])


def test_compile_raises_for_a_model_openvino_cannot_read() -> None:
    model = onnx.load_from_string(
        make_model(
            [oh.make_node("Frobnicate", ["x"], ["y"], name="f", domain="example.custom")],
            [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
            [oh.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
            opsets=(("", 17), ("example.custom", 1)),
        )
    )
    with pytest.raises(Exception):
        OpenVINOExecutionProvider().compile(onnxmux.Subgraph(model, ["x"], ["y"], []))


def compiled_mlp(options: dict):
    """The MLP compiled by the provider directly, as the partitioner would."""
    model = onnx.load_from_string(mlp_model())
    return OpenVINOExecutionProvider(options).compile(onnxmux.Subgraph(model, ["x"], ["y"], []))


def test_dynamic_dimensions_compile_once_for_every_batch() -> None:
    run = compiled_mlp({})
    for batch in (1, 7, 2):
        (y,) = run(np.ones((batch, 4), np.float32))
        assert y.shape == (batch, 3)
    assert run.compiled_shapes == [()]


def test_disable_dynamic_shapes_compiles_per_shape_signature() -> None:
    run = compiled_mlp({"disable_dynamic_shapes": "true"})
    reference = compiled_mlp({})
    for batch in (1, 7, 1):
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_allclose(run(x)[0], reference(x)[0], rtol=1e-6)
    assert sorted(run.compiled_shapes) == [((1, 4),), ((7, 4),)]


def test_cache_dir_receives_openvino_model_cache(tmp_path: Path) -> None:
    session = onnxmux.InferenceSession(mlp_model(), providers=[("openvino", {"cache_dir": str(tmp_path)}), "cpu"])
    session.run(None, {"x": np.ones((2, 4), np.float32)})
    assert any(tmp_path.iterdir())


def test_concurrent_runs_from_several_threads() -> None:
    session = onnxmux.InferenceSession(mlp_model(), providers=["openvino", "cpu"])
    reference = onnxmux.InferenceSession(mlp_model(), providers=["cpu"])
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            x = rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32)
            problem = compare(session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0], 1e-5, 1e-6)
            if problem:
                errors.append(problem)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- traditional ML ------------------------------------------------------------------------


def tree_pipeline_model() -> bytes:
    """Standardize (Sub, Div), a two-tree TreeEnsembleClassifier over 3 classes, then ZipMap."""
    trees = dict(
        nodes_treeids=[0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 0, 1, 2],
        nodes_featureids=[0, 0, 0, 2, 0, 0],
        nodes_values=[0.0, 0.0, 0.0, 0.5, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * 2,
        nodes_truenodeids=[1, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[2, 0, 0, 2, 0, 0],
        class_treeids=[0, 0, 0, 0, 1, 1, 1, 1],
        class_nodeids=[1, 1, 2, 2, 1, 1, 2, 2],
        class_ids=[0, 1, 1, 2, 0, 2, 1, 2],
        class_weights=[0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.2, 0.8],
        classlabels_int64s=[0, 1, 2],
    )
    zipped = oh.make_sequence_type_proto(oh.make_map_type_proto(TensorProto.INT64, oh.make_tensor_type_proto(TensorProto.FLOAT, [])))
    return make_model(
        [
            oh.make_node("Sub", ["X", "mean"], ["centered"], name="center"),
            oh.make_node("Div", ["centered", "std"], ["scaled"], name="scale"),
            oh.make_node("TreeEnsembleClassifier", ["scaled"], ["label", "probabilities"], name="trees", domain="ai.onnx.ml", **trees),
            oh.make_node("ZipMap", ["probabilities"], ["output_probability"], name="zipmap", domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
        ],
        [oh.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [oh.make_tensor_value_info("label", TensorProto.INT64, ["N"]), oh.make_value_info("output_probability", zipped)],
        [
            onnx.numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "mean"),
            onnx.numpy_helper.from_array(np.array([2, 2, 2, 2], np.float32), "std"),
        ],
        opsets=(("", 17), ("ai.onnx.ml", 3)),
    )


def test_tree_ensemble_with_zipmap_runs_its_ml_part_on_the_cpu() -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tree_pipeline_model()
    session = onnxmux.InferenceSession(model, providers=["openvino", "cpu"])
    owners = providers_of(session)
    assert owners == {"center": OV, "scale": OV, "trees": "CPUExecutionProvider", "zipmap": "CPUExecutionProvider"}
    x = np.random.default_rng(0).normal(2.0, 3.0, (16, 4)).astype(np.float32)
    labels, probabilities = session.run(None, {"X": x})
    want_labels, want_probabilities = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    np.testing.assert_array_equal(labels, want_labels)
    assert len(probabilities) == len(want_probabilities) == 16
    for got, want in zip(probabilities, want_probabilities):
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-6)


# -- real models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_models():
    """The benchmarks' torch-exported ResNet-18 and BERT encoder (exported once, cached)."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import models

    return models


@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_real_model_is_one_openvino_partition_matching_onnxruntime(real_models, name: str) -> None:
    """At the basic and the default optimization level, outputs match onnxruntime at FP32."""
    ort = pytest.importorskip("onnxruntime")
    from test_real_models import make_feeds

    path = str(real_models.MODELS[name]("dynamo"))
    basic = onnxmux.SessionOptions()
    basic.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sessions = [onnxmux.InferenceSession(path, options, providers=["openvino", "cpu"]) for options in (basic, None)]
    for session in sessions:
        assert [(p["provider"], p["kind"]) for p in plan_of(session)["partitions"]] == [(OV, "compiled")]
    reference = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for batch, seq in ((2, 16), (1, 9)):
        feeds = make_feeds(name, batch, seq, seed=batch)
        (want,) = reference.run(None, feeds)
        for session in sessions:
            (got,) = session.run(None, feeds)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_onnxmux_fused_ops_run_on_openvino() -> None:
    """The optimizer's com.onnxmux Gelu and LayerNormalization (for opsets before the ONNX ops)."""
    model = make_model(
        [
            oh.make_node("LayerNormalization", ["x", "scale", "bias"], ["n"], name="norm", domain="com.onnxmux", epsilon=1e-5),
            oh.make_node("Gelu", ["n"], ["g"], name="gelu", domain="com.onnxmux"),
            oh.make_node("Gelu", ["n"], ["t"], name="gelu_tanh", domain="com.onnxmux", approximate="tanh"),
        ],
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [oh.make_tensor_value_info("g", TensorProto.FLOAT, ["N", 8]), oh.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 8])],
        [
            onnx.numpy_helper.from_array(np.linspace(0.5, 1.5, 8).astype(np.float32), "scale"),
            onnx.numpy_helper.from_array(np.linspace(-0.1, 0.1, 8).astype(np.float32), "bias"),
        ],
        opsets=(("", 16), ("com.onnxmux", 1)),
        value_info=[oh.make_tensor_value_info("n", TensorProto.FLOAT, ["N", 8])],
    )
    session = onnxmux.InferenceSession(model, providers=["openvino", "cpu"])
    assert set(providers_of(session).values()) == {OV}
    x = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    for got, want in zip(session.run(None, {"x": x}), cpu_run(model, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- ONNX node tests -----------------------------------------------------------------------


def test_node_suite_passes_every_case_the_cpu_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node test the CPU provider passes also passes with OpenVINO first in the list."""
    used_openvino: set[str] = set()
    current = {"case": ""}

    class RecordingSession(onnxmux.InferenceSession):
        """Notes the cases whose plan gives OpenVINO at least one node."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if any(n["provider"] == OV for n in self.get_execution_plan().to_dict()["nodes"]):
                used_openvino.add(current["case"])

    monkeypatch.setattr(onnxmux, "InferenceSession", RecordingSession)
    regressions = []
    passed = {"cpu": 0, "openvino": 0}
    cases = node_cases()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases:
            on_cpu = run_case(case, ["cpu"])
            current["case"] = case.name
            with_openvino = run_case(case, ["openvino", "cpu"])
            passed["cpu"] += on_cpu.passed
            passed["openvino"] += with_openvino.passed
            if on_cpu.passed and not with_openvino.passed:
                regressions.append(f"{case.name}: {with_openvino.reason}")
    summary = {"cases": len(cases), **passed, "ran_on_openvino": len(used_openvino)}
    print(json.dumps(summary))
    assert regressions == []
    assert passed["openvino"] >= passed["cpu"]
    assert len(used_openvino) > len(cases) // 2
