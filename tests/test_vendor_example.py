"""The vendor example package installs from its folder and is found through its entry points only;
its own tests use onnxmux's provider test kit, which catches a deliberately broken copy of it."""

from __future__ import annotations

import os
import shutil
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


def _pytest(folder: Path) -> subprocess.CompletedProcess:
    """The example's own test suite (the kit comes in through onnxmux's pytest11 entry point)."""
    env = dict(os.environ, PYTHONPATH=str(folder))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")]
    return subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env)


def test_example_tests_pass_with_the_kit() -> None:
    run = _pytest(EXAMPLE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "10 passed" in run.stdout


#: Faults planted in a copy of the example: (file, original text, broken text).
FAULTS = [
    # Gemm returns float64 when transA is set: the output contract names it in the node suite.
    ("kernels.py", "return y if c is None else y + beta * c",
     "y = y if c is None else y + beta * c\n        return y.astype(np.float64) if trans_a else y"),
    # Relu writes into one buffer shared by every run: concurrent runs overwrite each other.
    ("kernels.py", "return lambda x: xp.maximum(x, np.float32(0))", "return lambda x: _shared_relu(x)"),
    ("kernels.py", "def _flag(value)", """def _shared_relu(x):
    import time
    buffer = _BUFFERS.setdefault(x.shape, np.empty(x.shape, np.float32))
    np.maximum(x, np.float32(0), out=buffer)
    time.sleep(0.002)
    return buffer


_BUFFERS = {}


def _flag(value)"""),
    # Host memory declared under another device name: every copy to and from it is pointless.
    ("kernels.py", 'device = "cpu"\n    registry = REGISTRY', 'device = "cpu:0"\n    data_transfer = _Same()\n    registry = REGISTRY'),
    ("kernels.py", "class AcmeExecutionProvider", "class _Same(onnxmux.DataTransfer):\n    def to_device(self, v):\n        return v\n\n    def to_host(self, v):\n        return v\n\n\nclass AcmeExecutionProvider"),
    # The graph provider computes sin for Tanh.
    ("graph.py", '"Tanh": np.tanh', '"Tanh": np.sin'),
]


def test_broken_copy_fails_the_kit_naming_each_fault(tmp_path: Path) -> None:
    broken = tmp_path / "vendor_provider"
    shutil.copytree(EXAMPLE, broken, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    for name, original, fault in FAULTS:
        path = broken / "onnxmux_acme" / name
        text = path.read_text()
        assert original in text, f"{original!r} is no longer in {name}: update the planted fault"
        path.write_text(text.replace(original, fault, 1))
    run = _pytest(broken)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    # The node suite names the failing cases; the output contract names the provider, node and dtype.
    assert "AcmeExecutionProvider: node test test_gemm_transposeA failed: ProviderError: AcmeExecutionProvider kernel of node" in out
    assert "returned a wrong output: 'y': expected element type float, got double" in out
    # The comparison with the CPU provider names the node, its op and its provider.
    assert "node 'tanh' (Tanh) on AcmeGraphExecutionProvider: output 'squashed' against the CPU provider: values differ" in out
    assert "from 'cpu' to 'cpu:0' is not a device crossing" in out
    assert "(4 threads x 4 runs), output 'probabilities' differs from the single-threaded run" in out
