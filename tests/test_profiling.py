"""Profiles in onnxruntime's format: node args, session events, copy events, the summary and
``onnxmux run --profile``; checked against a profile the installed onnxruntime writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnxruntime.transformers import profile_result_processor

import onnxmux
from helpers import affine_relu_model
from onnxmux.cli import main
from onnxmux.cli.profile_summary import load_events, summarize

NODE_ARGS = {
    "op_name",
    "provider",
    "node_index",
    "input_type_shape",
    "output_type_shape",
    "activation_size",
    "parameter_size",
    "output_size",
}
X = np.ones((2, 3), np.float32)


def _profile(runtime, model, tmp_path: Path, runs: int = 1, providers=None, parallel: bool = False, prefix: str = "p"):
    options = runtime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / prefix)
    if parallel:
        options.execution_mode = runtime.ExecutionMode.ORT_PARALLEL
    if runtime is onnxruntime:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        providers = ["CPUExecutionProvider"]
    session = runtime.InferenceSession(model, options, providers=providers)
    for _ in range(runs):
        session.run(None, {"x": X})
    return session, json.loads(Path(session.end_profiling()).read_text())


def _nodes(events):
    return [e for e in events if e["cat"] == "Node"]


def test_node_events_carry_onnxruntimes_args(tmp_path: Path) -> None:
    _, events = _profile(onnxmux, affine_relu_model().SerializeToString(), tmp_path, runs=2)
    nodes = _nodes(events)
    assert [e["name"] for e in nodes] == ["mul_kernel_time", "add_kernel_time", "relu_kernel_time"] * 2
    mul = nodes[0]["args"]
    assert set(mul) == NODE_ARGS
    assert mul["op_name"] == "Mul" and mul["provider"] == "CPUExecutionProvider" and mul["node_index"] == "0"
    assert mul["input_type_shape"] == [{"float": [2, 3]}, {"float": [3]}]
    assert mul["output_type_shape"] == [{"float": [2, 3]}]
    # x (2x3 float) is an activation, scale (3 floats) a parameter, the output 2x3 floats.
    assert (mul["activation_size"], mul["parameter_size"], mul["output_size"]) == ("24", "12", "24")
    assert [e["args"]["node_index"] for e in nodes[:3]] == ["0", "1", "2"]
    for event in events:
        assert (
            event["ph"] == "X" and isinstance(event["ts"], int) and isinstance(event["dur"], int) and event["dur"] >= 0
        )


def test_session_events_and_runs(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(affine_relu_model(), model)
    _, events = _profile(onnxmux, str(model), tmp_path, runs=3)
    session = [e["name"] for e in events if e["cat"] == "Session"]
    assert session[:2] == ["model_loading_uri", "session_initialization"] and session[2:] == ["model_run"] * 3
    _, from_bytes = _profile(onnxmux, affine_relu_model().SerializeToString(), tmp_path)
    assert from_bytes[0]["name"] == "model_loading_array"
    run = next(e for e in events if e["name"] == "model_run")
    inside = [e for e in _nodes(events) if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"]]
    assert len(inside) == 3  # the first run's kernels lie within its model_run event


def test_format_matches_onnxruntimes_own_profile(tmp_path: Path) -> None:
    model = affine_relu_model().SerializeToString()
    _, ours = _profile(onnxmux, model, tmp_path, prefix="mux")
    _, theirs = _profile(onnxruntime, model, tmp_path, prefix="ort")
    assert isinstance(ours, list) and isinstance(theirs, list)
    assert {key for e in ours for key in e} == {key for e in theirs for key in e}
    assert [e["name"] for e in _nodes(ours)] == [e["name"] for e in _nodes(theirs)]
    for mine, reference in zip(_nodes(ours), _nodes(theirs)):
        assert NODE_ARGS <= set(reference["args"]) and NODE_ARGS <= set(mine["args"])
        for key in ("op_name", "provider", "node_index", "input_type_shape", "output_type_shape", "output_size"):
            assert mine["args"][key] == reference["args"][key], key
        assert all(type(mine["args"][k]) is type(reference["args"][k]) for k in NODE_ARGS)
    names = {e["name"] for e in theirs if e["cat"] == "Session"}
    assert {"model_loading_array", "session_initialization", "model_run"} <= names
    assert {e["name"] for e in ours if e["cat"] == "Session"} <= names


def test_onnxruntimes_profile_tool_reads_onnxmux_profiles(tmp_path: Path) -> None:
    _, events = _profile(onnxmux, affine_relu_model().SerializeToString(), tmp_path, runs=2)
    lines = "\n".join(
        profile_result_processor.parse_node_results(events) + profile_result_processor.group_node_results(events)
    )
    for node in ("mul", "add", "relu"):
        assert f"\t{node}" in lines
    assert "Mul" in lines and "Relu" in lines and "CPU" in lines


def test_copies_are_events_of_their_own_with_bytes(tmp_path: Path) -> None:
    session, events = _profile(
        onnxmux, affine_relu_model().SerializeToString(), tmp_path, runs=2, providers=["test-device", "cpu"]
    )
    planned = session.get_execution_plan().to_dict()["copies"]
    copies = [e for e in _nodes(events) if e["args"]["op_name"].startswith("Memcpy")]
    assert len(copies) == 2 * len(planned) == 4
    first, second = copies[:2]
    assert first["name"] == "copy_shifted_to_testdev:0_kernel_time" and first["args"]["op_name"] == "MemcpyFromHost"
    assert second["name"] == "copy_y_to_cpu_kernel_time" and second["args"]["op_name"] == "MemcpyToHost"
    for copy in copies:
        assert copy["args"]["bytes"] == 24 and copy["args"]["provider"] == "TestDeviceExecutionProvider"
        assert copy["args"]["input_type_shape"] == copy["args"]["output_type_shape"] == [{"float": [2, 3]}]
    relu = next(e for e in _nodes(events) if e["name"] == "relu_kernel_time")
    assert relu["args"]["provider"] == "TestDeviceExecutionProvider"


def test_a_compiled_subgraph_is_one_event(tmp_path: Path) -> None:
    _, events = _profile(onnxmux, affine_relu_model().SerializeToString(), tmp_path, providers=["compile-test", "cpu"])
    (event,) = _nodes(events)
    assert event["name"] == "CompileTestExecutionProvider_subgraph_0_kernel_time"
    assert (
        event["args"]["op_name"] == "CompiledSubgraph" and event["args"]["provider"] == "CompileTestExecutionProvider"
    )
    # x, and the overridable initializer bias (scale lives inside the compiled model).
    assert event["args"]["input_type_shape"] == [{"float": [2, 3]}, {"float": [3]}]
    assert (event["args"]["activation_size"], event["args"]["parameter_size"], event["args"]["output_size"]) == (
        "24",
        "12",
        "24",
    )


def test_parallel_mode_and_end_profiling_stops_recording(tmp_path: Path) -> None:
    session, events = _profile(onnxmux, affine_relu_model().SerializeToString(), tmp_path, parallel=True)
    assert sorted(e["args"]["op_name"] for e in _nodes(events)) == ["Add", "Mul", "Relu"]
    session.run(None, {"x": X})
    again = json.loads(Path(session.end_profiling()).read_text())
    assert len(again) == len(events)  # as in onnxruntime, end_profiling ends the profile


def test_summary_of_onnxmux_and_onnxruntime_profiles(tmp_path: Path) -> None:
    model = affine_relu_model().SerializeToString()
    _, events = _profile(onnxmux, model, tmp_path, runs=3, providers=["test-device", "cpu"])
    summary = summarize(events)
    nodes = _nodes(events)
    assert summary.runs == 3 and summary.kernel_us == sum(e["dur"] for e in nodes)
    assert [r.total_us for r in summary.nodes] == sorted((r.total_us for r in summary.nodes), reverse=True)
    assert {r.name for r in summary.nodes} == {"mul", "add", "relu", "copy_shifted_to_testdev:0", "copy_y_to_cpu"}
    assert all(r.calls == 3 for r in summary.nodes)
    assert {r.name: r.calls for r in summary.providers} == {"CPUExecutionProvider": 6, "TestDeviceExecutionProvider": 9}
    assert sum(r.total_us for r in summary.providers) == summary.kernel_us
    assert summary.copies.calls == 6 and summary.copy_bytes == 6 * 24
    assert summary.copies.total_us == sum(e["dur"] for e in nodes if e["args"]["op_name"].startswith("Memcpy"))
    assert {"model_loading_array", "session_initialization"} <= set(summary.session)
    _, reference = _profile(onnxruntime, model, tmp_path, prefix="ort")
    theirs = summarize(reference)
    assert {r.name for r in theirs.op_types} == {"Mul", "Add", "Relu"} and theirs.runs == 1


def test_run_command_prints_a_profile_summary(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(affine_relu_model(), model)
    assert main(["run", str(model), "--repeat", "2", "--profile", "--profile-prefix", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    for text in (
        "top 10 nodes by time",
        "top 10 op types by time",
        "time per provider",
        "copies between devices: 0",
        "2 profiled runs",
    ):
        assert text in out
    written = list(tmp_path.glob("cli_*.json"))
    assert len(written) == 1 and str(written[0]) in out.replace("\n", "")
    assert len(_nodes(load_events(written[0]))) == 6


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
