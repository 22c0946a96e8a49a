"""The vendor example package installs from its folder and is found through its entry points only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vendor_provider"


@pytest.fixture(scope="module")
def installed() -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(EXAMPLE)],
        check=True,
    )


def test_listed_by_onnxmux_providers(installed) -> None:
    out = subprocess.run([sys.executable, "-m", "onnxmux.cli", "providers"], capture_output=True, text=True, check=True).stdout
    assert "AcmeExecutionProvider" in out and "AcmeGraphExecutionProvider" in out and "AcmeDeviceExecutionProvider" in out


def test_partitions_and_matches_the_cpu(installed) -> None:
    code = textwrap.dedent(
        """
        import json, numpy as np, onnxmux
        from onnxmux.cli.demo import build_cnn
        from onnx import helper
        model = build_cnn().SerializeToString()
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
        expected = onnxmux.InferenceSession(model).run(None, {"image": x})[0]
        acme = onnxmux.InferenceSession(model, providers=[("acme", {"fast_math": "1"}), "cpu"])
        got = acme.run(None, {"image": x})[0]
        plan = acme.get_execution_plan().to_dict()
        chain = helper.make_graph(
            [helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
             helper.make_node("Add", ["b", "x"], ["y"])], "chain",
            [helper.make_tensor_value_info("x", 1, [4])], [helper.make_tensor_value_info("y", 1, [4])])
        chain = helper.make_model(chain, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        graph = onnxmux.InferenceSession(chain, providers=["acme-graph", "cpu"])
        v = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
        options = onnxmux.SessionOptions()
        options.add_session_config_entry("session.check_provider_outputs", "1")
        device = onnxmux.InferenceSession(model, options, providers=["acme-device", "cpu"])
        device_plan = device.get_execution_plan().to_dict()
        print(json.dumps({
            "device_diff": float(np.abs(device.run(None, {"image": x})[0] - expected).max()),
            "device_ops": sorted({n["op_type"] for n in device_plan["nodes"] if n["provider"] == "AcmeDeviceExecutionProvider"}),
            "device_copies": {(c["from"], c["to"]) for c in device_plan["copies"]} == {("cpu", "acme:0"), ("acme:0", "cpu")},
            "max_diff": float(np.abs(got - expected).max()),
            "acme_ops": sorted({n["op_type"] for n in plan["nodes"] if n["provider"] == "AcmeExecutionProvider"}),
            "options": acme.get_provider_options()["AcmeExecutionProvider"],
            "graph_plan": [p["kind"] for p in graph.get_execution_plan().to_dict()["partitions"]],
            "graph_diff": float(np.abs(graph.run(None, {"x": v})[0] - (np.tanh(v * v) + v)).max()),
        }))
        """
    )
    import json

    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["max_diff"] < 1e-5
    assert out["acme_ops"] == ["Gemm", "Relu"]
    assert out["options"] == {"fast_math": True}
    assert out["graph_plan"] == ["compiled"]
    assert out["graph_diff"] < 1e-6
    assert out["device_diff"] < 1e-5 and out["device_ops"] == ["Relu"] and out["device_copies"]
