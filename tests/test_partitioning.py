"""The provider framework: priority partitioning, fusion without cycles, device copies, plans,
fallbacks, plugin discovery, parallel execution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_providers import CompileTestProvider

import onnxmux
from onnxmux.conformance import node_cases, run_case

V = helper.make_tensor_value_info


def _model(nodes, inputs, outputs, inits=()) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def diamond() -> bytes:
    """x -> Relu -> (Abs, Sqrt) -> Add -> Sigmoid: two branches that meet again."""
    return _model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Abs", ["r"], ["a"], name="abs"),
            helper.make_node("Sqrt", ["r"], ["n"], name="sqrt"),
            helper.make_node("Add", ["a", "n"], ["s"], name="add"),
            helper.make_node("Sigmoid", ["s"], ["y"], name="sigmoid"),
        ],
        [V("x", TensorProto.FLOAT, [2, 3])],
        [V("y", TensorProto.FLOAT, [2, 3])],
    )


X = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)


def _cpu(model: bytes, feed: dict) -> list:
    return onnxmux.InferenceSession(model).run(None, feed)


@pytest.fixture(scope="module")
def cpu_results() -> dict[str, bool]:
    return {c.name: run_case(c, ["cpu"]).passed for c in node_cases()}


@pytest.mark.parametrize("first", ["test-device", "compile-test"])
def test_node_suite_is_unchanged_with_a_provider_in_front(first: str, cpu_results, capsys) -> None:
    results = {c.name: run_case(c, [first, "cpu"]) for c in node_cases()}
    passed = sum(r.passed for r in results.values())
    with capsys.disabled():
        print(f"\nnode tests on [{first}, cpu]: {passed} passed of {len(results)} (cpu alone: {sum(cpu_results.values())})")
    differ = [f"{n}: {r.reason}" for n, r in results.items() if r.passed != cpu_results[n]]
    assert not differ, "\n".join(differ)


def test_copies_are_shared_per_value_and_device() -> None:
    # Relu and Sqrt have even-length names: they run on the test device; Abs, Add, Sigmoid do not.
    session = onnxmux.InferenceSession(diamond(), providers=["test-device", "cpu"])
    plan = session.get_execution_plan().to_dict()
    where = {n["name"]: n["provider"] for n in plan["nodes"]}
    assert where == {
        "relu": "TestDeviceExecutionProvider",
        "abs": "CPUExecutionProvider",
        "sqrt": "TestDeviceExecutionProvider",
        "add": "CPUExecutionProvider",
        "sigmoid": "CPUExecutionProvider",
    }
    copies = sorted((c["value"], c["from"], c["to"]) for c in plan["copies"])
    # r goes to the host once for Abs (shared), n comes back for Add; x goes up once.
    assert copies == [("n", "testdev:0", "cpu"), ("r", "testdev:0", "cpu"), ("x", "cpu", "testdev:0")]
    np.testing.assert_allclose(session.run(None, {"x": X})[0], _cpu(diamond(), {"x": X})[0])


def test_plan_dict_has_the_documented_shape() -> None:
    plan = onnxmux.InferenceSession(diamond(), providers=["test-device", "cpu"]).get_execution_plan().to_dict()
    assert list(plan) == ["providers", "nodes", "partitions", "copies"]
    assert plan["providers"] == ["TestDeviceExecutionProvider", "CPUExecutionProvider"]
    assert all(set(n) == {"name", "op_type", "domain", "provider", "partition"} for n in plan["nodes"])
    assert all(set(p) == {"id", "provider", "device", "kind", "nodes"} for p in plan["partitions"])
    assert all(set(c) == {"value", "from", "to"} for c in plan["copies"])
    json.dumps(plan)
    partition_of = {n["name"]: n["partition"] for n in plan["nodes"]}
    for p in plan["partitions"]:
        assert all(partition_of[name] == p["id"] for name in p["nodes"])


def test_compiled_groups_are_split_to_stay_acyclic() -> None:
    # Relu, Add and Sigmoid are compilable, Abs/Neg are not: {relu} -> abs/neg -> {add, sigmoid}
    # must become two fused pieces, since one piece would need its own output as input.
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Floor", ["r"], ["a"], name="floor"),
            helper.make_node("Ceil", ["r"], ["n"], name="ceil"),
            helper.make_node("Add", ["a", "n"], ["s"], name="add"),
            helper.make_node("Sigmoid", ["s"], ["y"], name="sigmoid"),
        ],
        [V("x", TensorProto.FLOAT, [2, 3])],
        [V("y", TensorProto.FLOAT, [2, 3])],
    )
    session = onnxmux.InferenceSession(model, providers=["compile-test", "cpu"])
    plan = session.get_execution_plan().to_dict()
    compiled = [p["nodes"] for p in plan["partitions"] if p["kind"] == "compiled"]
    assert sorted(compiled) == [["add", "sigmoid"], ["relu"]]
    np.testing.assert_allclose(session.run(None, {"x": X})[0], _cpu(model, {"x": X})[0])


class _BadClaims(CompileTestProvider):
    name = "BadClaimsExecutionProvider"
    aliases = ()
    mode = "twice"

    def claim(self, graph, candidates):
        if self.mode == "twice":
            return [[candidates[0], candidates[0]], [candidates[0]]]
        if self.mode == "unknown":
            return [[ir.node("Relu", [ir.Value(name="q")])]]
        if self.mode == "raise_claim":
            raise RuntimeError("claim exploded")
        return [list(candidates)]

    def compile(self, subgraph):
        if self.mode == "raise_compile":
            raise RuntimeError("compiler exploded")
        return super().compile(subgraph)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("twice", "twice"), ("unknown", "not in its candidates"), ("raise_claim", "claim exploded"), ("raise_compile", "compiler exploded")],
)
def test_misbehaving_compile_provider_falls_back(mode: str, message: str) -> None:
    cls = type(f"Bad_{mode}", (_BadClaims,), {"mode": mode, "name": f"Bad{mode}ExecutionProvider"})
    onnxmux.register_provider(cls)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = onnxmux.InferenceSession(diamond(), providers=[cls.name, "cpu"])
    assert any(message in str(w.message) for w in caught), [str(w.message) for w in caught]
    np.testing.assert_allclose(session.run(None, {"x": X})[0], _cpu(diamond(), {"x": X})[0])


def test_disabling_cpu_fallback_lists_unclaimed_nodes() -> None:
    options = onnxmux.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with pytest.raises(onnxmux.UnsupportedOperator) as info:
        onnxmux.InferenceSession(diamond(), options, providers=["test-device"])
    message = str(info.value)
    assert "3 nodes" in message and "'abs'" in message and "'add'" in message and "'sigmoid'" in message
    assert "TestDeviceExecutionProvider" in message


def test_provider_options_are_validated() -> None:
    with pytest.raises(onnxmux.InvalidArgument, match="unknown option 'threads'"):
        onnxmux.InferenceSession(diamond(), providers=[("cpu", {"threads": "2"})])


class _Typed(onnxmux.KernelProvider):
    name = "TypedOptionsExecutionProvider"
    registry = onnxmux.KernelRegistry()
    option_types = {"device_id": int}


def test_provider_option_of_the_wrong_type() -> None:
    onnxmux.register_provider(_Typed)
    with pytest.raises(onnxmux.InvalidArgument, match="option 'device_id' has an invalid value 'gpu-zero'"):
        onnxmux.InferenceSession(diamond(), providers=[(_Typed.name, {"device_id": "gpu-zero"})])
    session = onnxmux.InferenceSession(diamond(), providers=[(_Typed.name, {"device_id": "0"})])
    assert session.get_provider_options()[_Typed.name] == {"device_id": 0}


def test_parallel_mode_matches_sequential() -> None:
    rng = np.random.default_rng(0)
    branches = 6
    nodes, inits = [], []
    for b in range(branches):
        inits.append(numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), f"w{b}"))
        nodes += [
            helper.make_node("MatMul", ["x", f"w{b}"], [f"m{b}"], name=f"mm{b}"),
            helper.make_node("Tanh", [f"m{b}"], [f"t{b}"], name=f"tanh{b}"),
        ]
    nodes.append(helper.make_node("Sum", [f"t{b}" for b in range(branches)], ["y"], name="sum"))
    model = _model(nodes, [V("x", TensorProto.FLOAT, [32, 64])], [V("y", TensorProto.FLOAT, [32, 64])], inits)
    options = onnxmux.SessionOptions()
    options.execution_mode = onnxmux.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 3
    parallel = onnxmux.InferenceSession(model, options)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    for _ in range(20):
        np.testing.assert_array_equal(parallel.run(None, {"x": x})[0], _cpu(model, {"x": x})[0])
    with pytest.raises(onnxmux.InvalidArgument):
        parallel.run(None, {"x": x[:, :3]})
    np.testing.assert_array_equal(parallel.run(None, {"x": x})[0], _cpu(model, {"x": x})[0])


def test_parallel_mode_on_node_tests() -> None:
    options = onnxmux.SessionOptions()
    options.execution_mode = onnxmux.ExecutionMode.ORT_PARALLEL
    cases = [c for c in node_cases() if "_expanded" in c.name][:80]
    for case in cases:
        serial = run_case(case, ["cpu"])
        session_args = case.model.SerializeToString()
        if not serial.passed:
            continue
        parallel = onnxmux.InferenceSession(session_args, options)
        names = [i.name for i in case.model.graph.input]
        for inputs, _ in case.data_sets:
            feed = dict(zip(names, inputs))
            if not all(isinstance(v, np.ndarray) for v in feed.values()):
                continue
            expected = onnxmux.InferenceSession(session_args).run(None, feed)
            for a, b in zip(parallel.run(None, feed), expected):
                np.testing.assert_array_equal(a, b)


def _fake_plugin(tmp_path: Path, body: str) -> dict:
    """A distribution on sys.path whose entry point names module ``brokenplugin``."""
    dist = tmp_path / "brokenplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[onnxmux.providers]\nBrokenExecutionProvider = brokenplugin:Provider\n")
    (tmp_path / "brokenplugin.py").write_text(textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "250"  # rich tables must not truncate the names and reasons checked below
    return env


def test_plugin_that_fails_to_import_is_reported_not_fatal(tmp_path: Path) -> None:
    env = _fake_plugin(tmp_path, "raise ImportError('vendor SDK missing')\n")
    out = subprocess.run([sys.executable, "-m", "onnxmux.cli", "providers"], env=env, capture_output=True, text=True, check=True).stdout
    assert "BrokenExecutionProvider" in out and "vendor SDK missing" in out
    code = "import onnxmux; print(onnxmux.get_available_providers())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "CPUExecutionProvider" in out and "Broken" not in out
    env["ONNXMUX_DISABLE_PLUGINS"] = "1"
    out = subprocess.run([sys.executable, "-m", "onnxmux.cli", "providers"], env=env, capture_output=True, text=True, check=True).stdout
    assert "BrokenExecutionProvider" not in out


def test_unavailable_provider_is_skipped_with_a_warning(tmp_path: Path) -> None:
    env = _fake_plugin(
        tmp_path,
        """
        import onnxmux
        class Provider(onnxmux.KernelProvider):
            name = "BrokenExecutionProvider"
            registry = onnxmux.KernelRegistry()
            @classmethod
            def unavailable_reason(cls):
                return "no Broken hardware found"
        """,
    )
    code = textwrap.dedent(
        """
        import warnings, onnxmux
        from onnx import helper
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", 1, [1])], [helper.make_tensor_value_info("y", 1, [1])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            s = onnxmux.InferenceSession(m, providers=["BrokenExecutionProvider", "cpu"])
        print(s.get_providers(), [str(x.message) for x in w])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "['CPUExecutionProvider']" in out and "no Broken hardware found" in out


def test_cli_entry_module_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "onnxmux.cli", "providers"], capture_output=True, text=True, check=True).stdout
    assert "CPUExecutionProvider" in out


def test_nodes_inside_control_flow_bodies_are_partitioned() -> None:
    seen: list[str] = []
    registry = onnxmux.KernelRegistry()

    @registry.register("Relu", 14)
    def relu(ctx, xp):
        seen.append(ctx.name)
        return lambda x: xp.maximum(x, 0)

    class BodyRelu(onnxmux.KernelProvider):
        name = "BodyReluExecutionProvider"

    BodyRelu.registry = registry
    onnxmux.register_provider(BodyRelu)
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"], name="inner_relu")], "then", [], [V("t", TensorProto.FLOAT, [2, 3])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"], name="inner_neg")], "else", [], [V("e", TensorProto.FLOAT, [2, 3])]
    )
    model = _model(
        [helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_branch, else_branch=else_branch)],
        [V("c", TensorProto.BOOL, []), V("x", TensorProto.FLOAT, [2, 3])],
        [V("y", TensorProto.FLOAT, [2, 3])],
    )
    session = onnxmux.InferenceSession(model, providers=[BodyRelu.name, "cpu"])
    assert seen == ["inner_relu"]
    np.testing.assert_array_equal(session.run(None, {"c": np.array(True), "x": X})[0], np.maximum(X, 0))
    np.testing.assert_array_equal(session.run(None, {"c": np.array(False), "x": X})[0], -X)
