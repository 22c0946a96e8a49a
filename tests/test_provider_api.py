"""The versioned provider API (onnxmux.ep): api_version, ProviderSettings, and device memory:
direct device-to-device copies and providers sharing one device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper
from test_providers import DeviceArray, DeviceTransfer, _device_registry
from test_providers import forget_registered_providers  # noqa: F401 (a fixture, used by pytestmark)

import onnxmux
from onnxmux import ep

V = helper.make_tensor_value_info


pytestmark = pytest.mark.usefixtures("forget_registered_providers")

X = np.array([[1.0, -4.0, 9.0], [-16.0, 25.0, 36.0]], dtype=np.float32)


def chain() -> bytes:
    """x -> Relu -> Sqrt -> Abs -> y."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sqrt", ["r"], ["s"], name="sqrt"),
        helper.make_node("Abs", ["s"], ["y"], name="abs"),
    ]
    graph = helper.make_graph(nodes, "g", [V("x", TensorProto.FLOAT, [2, 3])], [V("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


EXPECTED = np.sqrt(np.maximum(X, 0))


# -- api_version -------------------------------------------------------------------------
def _versioned(version: str) -> type[ep.KernelProvider]:
    class Versioned(ep.KernelProvider):
        name = "VersionedExecutionProvider"
        api_version = version
        registry = ep.KernelRegistry()

    ep.register_provider(Versioned)
    return Versioned


def test_a_provider_for_another_major_version_is_listed_unavailable_with_the_reason() -> None:
    assert ep.API_VERSION.startswith("1.")
    _versioned("2.0")
    assert "VersionedExecutionProvider" not in onnxmux.get_available_providers()
    with pytest.warns(UserWarning, match=r"VersionedExecutionProvider is not available.*provider API 2\.0.*implements 1\."):
        session = onnxmux.InferenceSession(chain(), providers=["VersionedExecutionProvider", "cpu"])
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_a_provider_for_the_same_major_version_is_available() -> None:
    _versioned("1.99")
    assert "VersionedExecutionProvider" in onnxmux.get_available_providers()
    from onnxmux.providers.cpu import CPUExecutionProvider

    assert CPUExecutionProvider.api_version == ep.API_VERSION  # built-in providers inherit the version


# -- ProviderSettings --------------------------------------------------------------------
class Recording(ep.KernelProvider):
    name = "RecordingExecutionProvider"
    option_types = {"level": int, "cache": str}
    option_defaults = {"level": 3}
    registry = ep.KernelRegistry()
    seen: list[ep.ProviderSettings] = []

    def configure(self, settings: ep.ProviderSettings) -> None:
        super().configure(settings)
        type(self).seen.append(settings)


def test_settings_reach_the_provider(tmp_path: Path) -> None:
    ep.register_provider(Recording)
    path = tmp_path / "chain.onnx"
    path.write_bytes(chain())
    options = onnxmux.SessionOptions()
    options.intra_op_num_threads = 3
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.add_session_config_entry("acme.mode", "fast")
    Recording.seen.clear()
    onnxmux.InferenceSession(str(path), options, providers=[("RecordingExecutionProvider", {"cache": "x"}), "cpu"])
    onnxmux.InferenceSession(chain(), providers=["RecordingExecutionProvider", "cpu"])
    from_path, from_bytes = Recording.seen
    assert dict(from_path.options) == {"level": 3, "cache": "x"}
    assert from_path.intra_op_num_threads == 3
    assert from_path.graph_optimization_level == 1
    assert from_path.config_entry("acme.mode") == "fast" and from_path.config_entry("absent", "d") == "d"
    assert from_path.model_dir == tmp_path.resolve()
    assert from_bytes.model_dir is None and dict(from_bytes.options) == {"level": 3}


# -- device memory -----------------------------------------------------------------------
class CountingTransfer(DeviceTransfer):
    """The test device's transfer, counting moves; ``direct`` copies between its devices."""

    def __init__(self, direct: bool) -> None:
        self.direct = direct
        self.counts = {"to_device": 0, "to_host": 0, "direct": 0}

    def to_device(self, value: Any) -> Any:
        self.counts["to_device"] += 1
        return super().to_device(value)

    def to_host(self, value: Any) -> Any:
        self.counts["to_host"] += 1
        return super().to_host(value)

    def copier(self, target_device: str, target: ep.DataTransfer):
        if not (self.direct and isinstance(target, CountingTransfer)):
            return None

        def copy(value: DeviceArray) -> DeviceArray:
            assert isinstance(value, DeviceArray)
            self.counts["direct"] += 1
            return DeviceArray(value.array.copy())

        return copy


def _pair(direct: bool, second_device: str) -> tuple[type, type, CountingTransfer]:
    transfer = CountingTransfer(direct)

    class ReluDevice(ep.KernelProvider):
        name = "ReluDeviceExecutionProvider"
        device = "countdev:0"
        data_transfer = transfer
        registry = _device_registry(lambda op: op == "Relu")

    class SqrtDevice(ReluDevice):
        name = "SqrtDeviceExecutionProvider"
        device = second_device
        registry = _device_registry(lambda op: op == "Sqrt")

    ep.register_provider(ReluDevice)
    ep.register_provider(SqrtDevice)
    return ReluDevice, SqrtDevice, transfer


@pytest.mark.parametrize("direct", [True, False])
def test_device_to_device_copies_skip_the_host_when_the_transfer_can(direct: bool) -> None:
    first, second, transfer = _pair(direct, "countdev:1")
    session = onnxmux.InferenceSession(chain(), providers=[first.name, second.name, "cpu"])
    copies = session.get_execution_plan().to_dict()["copies"]
    assert {"value": "r", "from": "countdev:0", "to": "countdev:1"} in copies
    transfer.counts.update(to_device=0, to_host=0, direct=0)
    np.testing.assert_array_equal(session.run(None, {"x": X})[0], EXPECTED)
    # x goes up once and s comes down once; r moves directly, or down and up again
    expected = {"to_device": 1, "to_host": 1, "direct": 1} if direct else {"to_device": 2, "to_host": 2, "direct": 0}
    assert transfer.counts == expected


def test_providers_on_the_same_device_share_values_without_a_copy() -> None:
    first, second, transfer = _pair(True, "countdev:0")
    session = onnxmux.InferenceSession(chain(), providers=[first.name, second.name, "cpu"])
    plan = session.get_execution_plan().to_dict()
    assert {n["name"]: n["provider"] for n in plan["nodes"]}["sqrt"] == second.name
    assert [c["value"] for c in plan["copies"]] == ["x", "s"]
    transfer.counts.update(to_device=0, to_host=0, direct=0)
    np.testing.assert_array_equal(session.run(None, {"x": X})[0], EXPECTED)
    assert transfer.counts == {"to_device": 1, "to_host": 1, "direct": 0}


# -- provider-aware fusions --------------------------------------------------------------
def test_private_ops_are_made_only_when_every_provider_has_their_kernel() -> None:
    from test_optimizer import transformer_model, transformer_feeds
    from test_providers import register_all

    register_all()
    model = transformer_model(13).SerializeToString()  # opset 13: Gelu/LayerNorm only as com.onnxmux
    feeds = transformer_feeds()

    def domains(providers: list[str]) -> tuple[set[str], list]:
        session = onnxmux.InferenceSession(model, providers=providers)
        nodes = session.get_execution_plan().to_dict()["nodes"]
        return {n["domain"] for n in nodes}, session.run(None, feeds)

    cpu_domains, want = domains(["cpu"])
    assert "com.onnxmux" in cpu_domains
    for providers in (["compile-test", "cpu"], ["heavy-device", "cpu"]):  # neither has com.onnxmux kernels
        got_domains, got = domains(providers)
        assert "com.onnxmux" not in got_domains, providers
        np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)


# -- cost-aware placement ----------------------------------------------------------------
def test_cost_placement_gives_a_copy_bound_island_back() -> None:
    class SoftmaxDevice(ep.KernelProvider):
        name = "SoftmaxDeviceExecutionProvider"
        device = "softdev:0"
        data_transfer = DeviceTransfer()
        registry = _device_registry(lambda op: op in {"Softmax", "MatMul"})

    ep.register_provider(SoftmaxDevice)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["s"], name="softmax"),
        helper.make_node("Abs", ["s"], ["a"], name="abs"),
        helper.make_node("MatMul", ["a", "w"], ["y"], name="matmul"),
    ]
    w = np.full((128, 512), 0.01, np.float32)
    graph = helper.make_graph(nodes, "g", [V("x", TensorProto.FLOAT, [64, 128])], [V("y", TensorProto.FLOAT, [64, 512])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [128, 512], w.ravel())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    x = np.linspace(-2, 2, 64 * 128, dtype=np.float32).reshape(64, 128)
    plans, outputs = {}, {}
    for policy in ("greedy", "cost"):
        options = onnxmux.SessionOptions()
        options.add_session_config_entry("session.placement_policy", policy)
        session = onnxmux.InferenceSession(model, options, providers=[SoftmaxDevice.name, "cpu"])
        plans[policy], outputs[policy] = session.get_execution_plan(), session.run(None, {"x": x})[0]
    np.testing.assert_allclose(outputs["cost"], outputs["greedy"], rtol=1e-6)
    where = {p: {n["name"]: n["provider"] for n in plan.nodes} for p, plan in plans.items()}
    assert where["greedy"]["softmax"] == where["greedy"]["matmul"] == SoftmaxDevice.name
    # Softmax: 2 * 32 KiB copied in and out for 8192 elements of work -> back to the CPU;
    # MatMul: 32 + 128 KiB in and out for 64*512*128/16 = 262144 of work -> stays (w is uploaded once)
    assert where["cost"]["softmax"] == "CPUExecutionProvider" and where["cost"]["matmul"] == SoftmaxDevice.name
    assert plans["cost"].moved == [{"nodes": ["softmax"], "from": SoftmaxDevice.name, "to": "CPUExecutionProvider",
                                    "copy_bytes": 2 * 64 * 128 * 4, "work": 8192.0}]
    assert "placement" in plans["cost"].declined["softmax"][SoftmaxDevice.name]
    assert len(plans["cost"].copies) < len(plans["greedy"].copies)
    options = onnxmux.SessionOptions()
    options.add_session_config_entry("session.placement_policy", "fastest")
    with pytest.raises(onnxmux.InvalidArgument, match="session.placement_policy must be one of greedy, cost"):
        onnxmux.InferenceSession(model, options, providers=[SoftmaxDevice.name, "cpu"])


# -- CLI ---------------------------------------------------------------------------------
def test_cli_provider_options(tmp_path: Path, capsys) -> None:
    import json

    from onnxmux.cli import main

    ep.register_provider(Recording)
    path = tmp_path / "chain.onnx"
    path.write_bytes(chain())
    Recording.seen.clear()
    args = ["plan", str(path), "--providers", "RecordingExecutionProvider,cpu", "--json"]
    assert main([*args, "--provider-option", "RecordingExecutionProvider:cache=/tmp/c"]) == 0
    assert json.loads(capsys.readouterr().out)["providers"][0] == "RecordingExecutionProvider"
    assert dict(Recording.seen[-1].options) == {"level": 3, "cache": "/tmp/c"}
    assert main(["run", str(path), "--providers", "RecordingExecutionProvider", "--provider-option", "RecordingExecutionProvider:level=7"]) == 0
    assert Recording.seen[-1].options["level"] == 7
    assert main([*args, "--provider-option", "RecordingExecutionProvider:level=high"]) == 2
    assert "option 'level' has an invalid value 'high'" in capsys.readouterr().err
    assert main([*args, "--provider-option", "cpu:x=1"]) == 2
    assert "unknown option 'x'" in capsys.readouterr().err
    assert main([*args, "--provider-option", "nonsense"]) == 2
    assert "is not of the form PROVIDER:KEY=VALUE" in capsys.readouterr().err
