"""The TensorRT provider, in the parts that run without TensorRT or a GPU.

Tested here: option parsing and validation, the availability reasons, the engine cache (its key,
atomic writes, recovery from unusable files), the ONNX model a claimed subgraph becomes (run on
the CPU provider against the original nodes on a sample of ONNX's node tests), and that
onnxmux's private ops never reach TensorRT's parser. TensorRT itself is never imported or
imitated: the parser's support query is replaced by a stand-in that accepts everything (to
exercise the export) or records what it is shown, and no engine is built or run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux.conformance import node_cases, run_case
from onnxmux.core.errors import InvalidArgument, ProviderError
from onnxmux.providers.tensorrt import TensorrtExecutionProvider, availability, capability
from onnxmux.providers.tensorrt.cache import BlobCache, EngineKey, GpuIdentity, load_or_build
from onnxmux.providers.tensorrt.compiled import engine_key
from onnxmux.providers.tensorrt.export import export_model, model_bytes
from onnxmux.providers.tensorrt.options import Profile, TensorrtSettings

TRT = TensorrtExecutionProvider
V = helper.make_tensor_value_info


def settings(**options: Any) -> TensorrtSettings:
    return TensorrtSettings.from_options(TRT.parse_options(options))


# -- options -------------------------------------------------------------------------------


def test_options_parse_from_strings_and_native_values() -> None:
    got = settings(
        device_id="1",
        trt_fp16_enable="1",
        trt_bf16_enable=False,
        trt_max_workspace_size="2147483648",
        trt_builder_optimization_level=5,
        trt_timing_cache_enable="true",
        trt_engine_cache_enable=1,
        trt_engine_cache_path="/tmp/engines",
        trt_profile_min_shapes="input_ids:1x1,mask:1x1",
        trt_profile_opt_shapes="input_ids:4x64,mask:4x64",
        trt_profile_max_shapes="input_ids:8x512, mask:8x512",
    )
    assert (got.device_id, got.trt_fp16_enable, got.trt_bf16_enable) == (1, True, False)
    assert (got.trt_max_workspace_size, got.trt_builder_optimization_level) == (2**31, 5)
    assert got.trt_timing_cache_enable and got.trt_engine_cache_enable and got.trt_engine_cache_path == "/tmp/engines"
    assert got.profile == Profile({"input_ids": ((1, 1), (4, 64), (8, 512)), "mask": ((1, 1), (4, 64), (8, 512))})


def test_defaults_are_onnxruntimes() -> None:
    got = settings()
    assert (got.device_id, got.trt_fp16_enable, got.trt_bf16_enable, got.trt_max_workspace_size) == (0, False, False, 0)
    assert got.trt_builder_optimization_level == 3 and got.profile is None
    assert not got.trt_engine_cache_enable and not got.trt_timing_cache_enable


def test_profile_input_names_may_hold_colons() -> None:
    got = settings(trt_profile_min_shapes="a:b:1x2", trt_profile_opt_shapes="a:b:2x2", trt_profile_max_shapes="a:b:3x2")
    assert got.profile.shapes == {"a:b": ((1, 2), (2, 2), (3, 2))}


@pytest.mark.parametrize(
    "option, value",
    [
        ("device_id", "-1"),
        ("device_id", "gpu0"),
        ("trt_fp16_enable", "maybe"),
        ("trt_bf16_enable", 2),
        ("trt_max_workspace_size", "-5"),
        ("trt_max_workspace_size", 1.5),
        ("trt_builder_optimization_level", "6"),
        ("trt_builder_optimization_level", "-1"),
        ("trt_engine_cache_path", "  "),
        ("trt_profile_min_shapes", "x:1xa"),
        ("trt_profile_min_shapes", "1x3"),
        ("trt_profile_min_shapes", "x:1x3,x:1x4"),
        ("trt_profile_min_shapes", ""),
    ],
)
def test_bad_values_raise_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(InvalidArgument, match=f"option '{option}' has an invalid value"):
        TRT.parse_options({option: value})


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(InvalidArgument, match="unknown option 'trt_int8_enable'.*trt_fp16_enable"):
        TRT.parse_options({"trt_int8_enable": "1"})


@pytest.mark.parametrize(
    "profiles, message",
    [
        ({"trt_profile_min_shapes": "x:1x3"}, "without trt_profile_opt_shapes, trt_profile_max_shapes"),
        ({"trt_profile_min_shapes": "x:1x3", "trt_profile_opt_shapes": "x:2x3", "trt_profile_max_shapes": "y:4x3"}, "same inputs"),
        ({"trt_profile_min_shapes": "x:1x3", "trt_profile_opt_shapes": "x:2x3", "trt_profile_max_shapes": "x:4"}, "different ranks"),
        ({"trt_profile_min_shapes": "x:2x3", "trt_profile_opt_shapes": "x:1x3", "trt_profile_max_shapes": "x:4x3"}, "min <= opt <= max"),
    ],
)
def test_profiles_are_checked_against_each_other(profiles: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        settings(**profiles)


# -- availability ----------------------------------------------------------------------------


def _importer(modules: dict[str, Any]) -> Callable[[str], Any]:
    def load(name: str) -> Any:
        if isinstance(modules[name], Exception):
            raise modules[name]
        return modules[name]

    return load


def _cupy_with(get_count: Callable[[], int]) -> Any:
    """A stand-in for CuPy's device enumeration only."""
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count)))


def test_reason_when_tensorrt_is_missing() -> None:
    reason = availability.tensorrt_reason(_importer({"tensorrt": ImportError("No module named 'tensorrt'")}))
    assert reason.startswith("tensorrt not installed") and "onnxmux[tensorrt]" in reason
    assert reason.endswith("experimental, not run on hardware")


def test_reasons_when_no_cuda_device() -> None:
    def no_driver() -> int:
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    assert availability.cuda_reason(_importer({"cupy": _cupy_with(lambda: 0)})) == "no CUDA device; experimental, not run on hardware"
    reason = availability.cuda_reason(_importer({"cupy": _cupy_with(no_driver)}))
    assert reason.startswith("no CUDA device (RuntimeError: cudaErrorInsufficientDriver")
    assert availability.cuda_reason(_importer({"cupy": _cupy_with(lambda: 2)})) is None
    missing = availability.cuda_reason(_importer({"cupy": ImportError("No module named 'cupy'")}))
    assert missing.startswith("CuPy not installed")


def test_this_machine_reports_tensorrt_missing_and_sessions_fall_back_to_the_cpu() -> None:
    assert importlib.util.find_spec("tensorrt") is None, "this test describes a machine without TensorRT"
    reason = TRT.unavailable_reason()
    assert reason.startswith("tensorrt not installed") and "experimental, not run on hardware" in reason
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [V("x", TensorProto.FLOAT, [2])], [V("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.warns(UserWarning, match="TensorrtExecutionProvider is not available.*tensorrt not installed"):
        session = onnxmux.InferenceSession(model.SerializeToString(), providers=["tensorrt", "cpu"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 2], np.float32)})[0], [0, 2])


def test_providers_command_lists_tensorrt_as_experimental(capsys: pytest.CaptureFixture) -> None:
    from onnxmux.cli import main

    assert main(["providers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, row in enumerate(lines) if "TensorrtExecutionProvider" in row)
    row = [lines[first]]
    for line in lines[first + 1 :]:  # the status cell may wrap onto lines whose first cell is empty
        if line.split("│")[1].strip():
            break
        row.append(line)
    cells = [line.split("│") for line in row]
    assert cells[0][2].strip() == "tensorrt" and cells[0][3].strip() == "cuda:0"
    status = " ".join(cell[4].strip() for cell in cells)
    assert "experimental, not run on hardware" in status


# -- engine cache ----------------------------------------------------------------------------


def _model(scale: float = 2.0) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"], name="mul")],
        "g",
        [V("x", TensorProto.FLOAT, ["n", 4])],
        [V("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(np.full(4, scale, np.float32), "s")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


GPU = GpuIdentity("10.7.0", "NVIDIA H100 80GB HBM3", "9.0")
SHAPES = {"x": ((1, 4), (8, 4), (64, 4))}


def test_cache_key_changes_with_every_field() -> None:
    base = engine_key(_model(), SHAPES, settings(), GPU)
    assert engine_key(_model(), SHAPES, settings(), GPU) == base
    variants = {
        "subgraph": engine_key(_model(scale=3.0), SHAPES, settings(), GPU),
        "shapes": engine_key(_model(), {"x": ((1, 4), (8, 4), (128, 4))}, settings(), GPU),
        "precision fp16": engine_key(_model(), SHAPES, settings(trt_fp16_enable=1), GPU),
        "precision bf16": engine_key(_model(), SHAPES, settings(trt_bf16_enable=1), GPU),
        "builder workspace": engine_key(_model(), SHAPES, settings(trt_max_workspace_size=1 << 30), GPU),
        "builder level": engine_key(_model(), SHAPES, settings(trt_builder_optimization_level=5), GPU),
        "tensorrt_version": engine_key(_model(), SHAPES, settings(), dataclasses.replace(GPU, tensorrt_version="10.8.0")),
        "gpu_name": engine_key(_model(), SHAPES, settings(), dataclasses.replace(GPU, gpu_name="NVIDIA A100-SXM4-40GB")),
        "compute_capability": engine_key(_model(), SHAPES, settings(), dataclasses.replace(GPU, compute_capability="8.0")),
    }
    # Every field of the key (and of the GPU identity) is varied above: a new field needs a case here.
    varied = {name.split()[0] for name in variants}
    assert varied == {f.name for f in dataclasses.fields(EngineKey)} - {"gpu"} | {f.name for f in dataclasses.fields(GpuIdentity)}
    cache = BlobCache("/nowhere", "onnxmux_trt_", ".engine")
    paths = {name: cache.path(key) for name, key in variants.items()}
    assert len(set(paths.values()) | {cache.path(base)}) == len(variants) + 1


def test_cache_key_ignores_documentation_strings() -> None:
    documented = _model()
    documented.doc_string = "exported on Tuesday"
    documented.graph.node[0].doc_string = "a multiplication"
    subgraph = onnxmux.Subgraph(documented, ["x"], ["y"], [])
    plain = onnxmux.Subgraph(_model(), ["x"], ["y"], [])
    key = engine_key(export_model(subgraph), SHAPES, settings(), GPU)
    assert key == engine_key(export_model(plain), SHAPES, settings(), GPU)


def test_store_is_atomic_and_loads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = BlobCache(tmp_path / "engines", "onnxmux_trt_", ".engine")
    key = engine_key(_model(), SHAPES, settings(), GPU)
    path = cache.store(key, b"engine one")
    assert cache.load(key) == b"engine one" and os.listdir(path.parent) == [path.name]

    def interrupted(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(OSError, match="disk full"):
        cache.store(key, b"engine two, never completed")
    assert cache.load(key) == b"engine one", "a failed write must leave the previous file intact"
    assert os.listdir(path.parent) == [path.name], "no temporary file is left behind"


def _damage(kind: str, path: Path, other: Path) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[:-3])
    elif kind == "flipped byte":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif kind == "garbage":
        path.write_bytes(b"\x00" * 40)
    elif kind == "cut in header":
        path.write_bytes(data[:14])
    elif kind == "another key":
        path.write_bytes(other.read_bytes())


@pytest.mark.parametrize("kind", ["truncated", "flipped byte", "garbage", "cut in header", "another key"])
def test_unusable_cache_file_is_rebuilt_with_a_warning(tmp_path: Path, kind: str) -> None:
    cache = BlobCache(tmp_path, "onnxmux_trt_", ".engine")
    key = engine_key(_model(), SHAPES, settings(), GPU)
    other = cache.store(engine_key(_model(scale=5.0), SHAPES, settings(), GPU), b"another engine")
    path = cache.store(key, b"the engine bytes")
    _damage(kind, path, other)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"rebuilt engine"

    with pytest.warns(UserWarning, match=f"TensorRT cache file {path} is unusable .*; it is rebuilt"):
        assert load_or_build(cache, key, build, bytes) == b"rebuilt engine"
    assert len(builds) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_or_build(cache, key, build, bytes) == b"rebuilt engine"
    assert len(builds) == 1, "the rebuilt file is used on the next load"


def test_payload_the_loader_refuses_is_rebuilt(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, "onnxmux_trt_", ".engine")
    key = engine_key(_model(), SHAPES, settings(), GPU)
    cache.store(key, b"from an older TensorRT")

    def deserialize(payload: bytes) -> str:
        if payload.startswith(b"from an older"):
            raise ProviderError("TensorRT could not deserialize the engine")
        return payload.decode()

    with pytest.warns(UserWarning, match="cannot be loaded: TensorRT could not deserialize"):
        assert load_or_build(cache, key, lambda: b"fresh", deserialize) == "fresh"
    assert cache.load(key) == b"fresh"


def test_without_a_cache_every_load_builds() -> None:
    builds: list[int] = []
    for _ in range(2):
        assert load_or_build(None, "any key", lambda: builds.append(1) or b"e", bytes) == b"e"
    assert len(builds) == 2


# -- the subgraph export, run on the CPU provider ----------------------------------------------


def _accept_everything(data: bytes) -> capability.ParserReport:
    """A stand-in for the parser's support query: one supported subgraph of every node it is shown."""
    count = len(onnx.load_from_string(data).graph.node)
    return capability.ParserReport([(list(range(count)), True)])


class ExportCheckProvider(onnxmux.CompileProvider):
    """The TensorRT provider's claim and export with the parser replaced by a query stand-in,
    each exported model run by a CPU session instead of a TensorRT engine."""

    name = "TensorrtExportCheckExecutionProvider"
    aliases = ("trt-export-check",)
    device = "cpu"
    query: Callable[[bytes], capability.ParserReport] = staticmethod(_accept_everything)
    exported: list[onnx.ModelProto] = []

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.opsets: dict[str, int] = {}
        self.reasons: dict[ir.Node, str] = {}

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        self.opsets = capability.opsets_of(graph, self.opsets)
        groups, reasons = capability.claim(graph, candidates, self.opsets, type(self).query)
        self.reasons.update(reasons)
        return groups

    def explain(self, node: ir.Node) -> str:
        return self.reasons.get(node, "not claimed")

    def compile(self, subgraph: onnxmux.Subgraph) -> Callable[..., tuple]:
        model = export_model(subgraph)
        type(self).exported.append(model)
        options = onnxmux.SessionOptions()
        options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxmux.InferenceSession(model_bytes(model), options, providers=["cpu"])
        names = [v.name for v in model.graph.input]
        assert names == subgraph.inputs

        def run(*values: Any) -> tuple:
            return tuple(session.run(None, dict(zip(names, values))))

        return run


@pytest.fixture(autouse=True, scope="module")
def _export_check() -> None:
    onnxmux.register_provider(ExportCheckProvider)


def test_exported_subgraphs_compute_what_the_original_nodes_compute(capsys: pytest.CaptureFixture) -> None:
    """A third of ONNX's node tests: with the exported subgraphs running on the CPU, every case
    passes or fails exactly as on the CPU provider alone."""
    sample = node_cases()[::3]
    ExportCheckProvider.exported.clear()
    differ, claimed = [], 0
    for case in sample:
        alone = run_case(case, ["cpu"])
        exported = run_case(case, ["trt-export-check", "cpu"])
        claimed += ExportCheckProvider.name in exported.placement
        if exported.passed != alone.passed:
            differ.append(f"{case.name}: {exported.reason or alone.reason}")
    with capsys.disabled():
        print(f"\nexported subgraphs: {claimed} of {len(sample)} node tests ran (partly) as exported models")
    assert not differ, "\n".join(differ)
    assert claimed > len(sample) * 0.7  # the rest hold sequences, strings, doubles or ai.onnx.ml ops
    assert all(o.domain in ("", "ai.onnx") for m in ExportCheckProvider.exported for o in m.opset_import)


def test_subgraph_export_cut_from_a_larger_graph() -> None:
    """A graph with a node the claim declines: the claimed pieces around it are exported with their
    boundary values as inputs and outputs, and the session's results match the CPU's."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("Cast", ["r"], ["d"], name="to_double", to=TensorProto.DOUBLE),
            helper.make_node("Sqrt", ["d"], ["q"], name="sqrt_double"),
            helper.make_node("Cast", ["q"], ["f"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Add", ["f", "r"], ["y"], name="add"),
        ],
        "g",
        [V("x", TensorProto.FLOAT, ["n", 3])],
        [V("y", TensorProto.FLOAT, ["n", 2]), V("r", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) - 2, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    ExportCheckProvider.exported.clear()
    session = onnxmux.InferenceSession(model, providers=["trt-export-check", "cpu"])
    plan = session.get_execution_plan()
    where = {n["name"]: n["provider"] for n in plan.to_dict()["nodes"]}
    assert where["sqrt_double"] == "CPUExecutionProvider"
    assert "DOUBLE" in plan.declined["sqrt_double"][ExportCheckProvider.name]
    assert where["matmul"] == where["relu"] == where["add"] == ExportCheckProvider.name
    assert ExportCheckProvider.exported, "the claimed pieces were exported"
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    for got, want in zip(session.run(None, {"x": x}), onnxmux.InferenceSession(model).run(None, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-6)


# -- private ops ----------------------------------------------------------------------------


def _private_ops_model() -> bytes:
    """onnxmux's com.onnxmux LayerNormalization and Gelu (optimizer fusions), between ONNX ops,
    one of them inside an If branch."""
    then_branch = helper.make_graph(
        [helper.make_node("Gelu", ["n"], ["b"], name="inner_gelu", domain="com.onnxmux")], "then", [], [V("b", TensorProto.FLOAT, ["N", 8])]
    )
    else_branch = helper.make_graph([helper.make_node("Neg", ["n"], ["c"], name="inner_neg")], "else", [], [V("c", TensorProto.FLOAT, ["N", 8])])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["m"], name="mul"),
            helper.make_node("LayerNormalization", ["m", "scale", "bias"], ["n"], name="norm", domain="com.onnxmux", epsilon=1e-5),
            helper.make_node("Gelu", ["n"], ["g"], name="gelu", domain="com.onnxmux"),
            helper.make_node("Tanh", ["g"], ["y"], name="tanh"),
            helper.make_node("If", ["flag"], ["z"], name="branch", then_branch=then_branch, else_branch=else_branch),
        ],
        "g",
        [V("x", TensorProto.FLOAT, ["N", 8]), V("flag", TensorProto.BOOL, [])],
        [V("y", TensorProto.FLOAT, ["N", 8]), V("z", TensorProto.FLOAT, ["N", 8])],
        [
            numpy_helper.from_array(np.linspace(0.5, 1.5, 8).astype(np.float32), "scale"),
            numpy_helper.from_array(np.linspace(-0.1, 0.1, 8).astype(np.float32), "bias"),
        ],
        value_info=[V(name, TensorProto.FLOAT, ["N", 8]) for name in ("m", "n", "g")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16), helper.make_opsetid("com.onnxmux", 1)])
    return model.SerializeToString()


def test_private_ops_never_reach_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[onnx.ModelProto] = []

    def recording(data: bytes) -> capability.ParserReport:
        shown.append(onnx.load_from_string(data))
        return _accept_everything(data)

    monkeypatch.setattr(ExportCheckProvider, "query", staticmethod(recording))
    ExportCheckProvider.exported.clear()
    session = onnxmux.InferenceSession(_private_ops_model(), providers=["trt-export-check", "cpu"])
    plan = session.get_execution_plan()
    where = {n["name"]: n["provider"] for n in plan.to_dict()["nodes"]}
    assert where == {
        "mul": ExportCheckProvider.name,
        "norm": "CPUExecutionProvider",
        "gelu": "CPUExecutionProvider",
        "tanh": ExportCheckProvider.name,
        "branch": "CPUExecutionProvider",
    }
    for name in ("norm", "gelu"):
        assert "private com.onnxmux op; it is never handed to TensorRT" in plan.declined[name][ExportCheckProvider.name]
    assert "subgraph node Gelu" in plan.declined["branch"][ExportCheckProvider.name]

    def domains(graph: onnx.GraphProto) -> set[str]:
        found = {n.domain for n in graph.node}
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    found |= domains(attr.g)
        return found

    assert shown and ExportCheckProvider.exported
    assert all("com.onnxmux" not in domains(m.graph) for m in shown + ExportCheckProvider.exported)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    feed = {"x": x, "flag": np.array(True)}
    for got, want in zip(session.run(None, feed), onnxmux.InferenceSession(_private_ops_model()).run(None, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
