"""EP context: compiled OpenVINO partitions saved as com.microsoft EPContext nodes and loaded
back without compiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxmux
from onnxmux import ep
from onnxmux.providers.openvino import OpenVINOExecutionProvider

pytestmark = pytest.mark.skipif(OpenVINOExecutionProvider.unavailable_reason() is not None, reason="openvino is not installed")

V = helper.make_tensor_value_info
W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)


def write_model(folder: Path) -> Path:
    """x @ w -> Relu -> Sigmoid (OpenVINO), then Binarizer (ai.onnx.ml: CPU only) -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
        helper.make_node("Binarizer", ["s"], ["y"], name="binarize", domain="ai.onnx.ml", threshold=0.7),
    ]
    graph = helper.make_graph(
        nodes, "g", [V("x", TensorProto.FLOAT, [2, 3])], [V("y", TensorProto.FLOAT, [2, 4]), V("s", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path


def _options(**entries: str) -> onnxmux.SessionOptions:
    options = onnxmux.SessionOptions()
    for key, value in entries.items():
        options.add_session_config_entry(key.replace("_", ".", 1), value)
    return options


@pytest.mark.parametrize("embed", ["1", "0"])
def test_round_trip_loads_without_compiling(tmp_path: Path, embed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_model(tmp_path)
    first = onnxmux.InferenceSession(str(path), _options(ep_context_enable="1", ep_context_embed_mode=embed), providers=["openvino", "cpu"])
    want = first.run(None, {"x": X})
    saved = onnx.load(tmp_path / "model_ctx.onnx")
    contexts = [n for n in saved.graph.node if n.op_type == "EPContext"]
    assert len(contexts) == 1 and contexts[0].domain == "com.microsoft"
    attrs = {a.name: helper.get_attribute_value(a) for a in contexts[0].attribute}
    assert attrs["source"] == b"OpenVINOExecutionProvider" and attrs["embed_mode"] == int(embed)
    assert list(contexts[0].input) == ["x"] and set(contexts[0].output) == {"s"}
    assert [n.op_type for n in saved.graph.node if n.op_type != "EPContext"] == ["Binarizer"]
    assert not saved.graph.initializer  # w lives in the compiled blob now
    if embed == "0":
        assert (tmp_path / attrs["ep_cache_context"].decode()).is_file()

    def no_compile(self, subgraph):
        raise AssertionError("compiled again")

    monkeypatch.setattr(OpenVINOExecutionProvider, "compile", no_compile)
    loaded = onnxmux.InferenceSession(str(tmp_path / "model_ctx.onnx"), providers=["openvino", "cpu"])
    for got, expected in zip(loaded.run(None, {"x": X}), want):
        np.testing.assert_array_equal(got, expected)
    assert {p["provider"] for p in loaded.get_execution_plan().to_dict()["partitions"]} == {
        "OpenVINOExecutionProvider", "CPUExecutionProvider"}


def test_context_file_path_and_errors(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    target = tmp_path / "out" / "cached.onnx"
    onnxmux.InferenceSession(path.read_bytes(), _options(ep_context_enable="1", ep_context_file_path=str(target)), providers=["openvino", "cpu"])
    assert target.is_file()
    with pytest.raises(onnxmux.InvalidArgument, match="ep.context_file_path"):
        onnxmux.InferenceSession(path.read_bytes(), _options(ep_context_enable="1"), providers=["openvino", "cpu"])
    with pytest.raises(onnxmux.UnsupportedOperator, match="compiled by OpenVINOExecutionProvider, which this session does not use"):
        onnxmux.InferenceSession(str(target), providers=["cpu"])


def test_a_blob_file_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path)
    onnxmux.InferenceSession(str(path), _options(ep_context_enable="1", ep_context_embed_mode="0"), providers=["openvino", "cpu"])
    model = onnx.load(tmp_path / "model_ctx.onnx")
    node = next(n for n in model.graph.node if n.op_type == "EPContext")
    next(a for a in node.attribute if a.name == "ep_cache_context").s = b"../elsewhere.blob"
    onnx.save(model, tmp_path / "bad_ctx.onnx")
    with pytest.warns(ep.ProviderFallbackWarning, match="import_compiled raised InvalidGraph.*outside the model's folder"):
        with pytest.raises(ep.EPFail, match="OpenVINOExecutionProvider_0"):
            onnxmux.InferenceSession(str(tmp_path / "bad_ctx.onnx"), providers=["openvino", "cpu"])
