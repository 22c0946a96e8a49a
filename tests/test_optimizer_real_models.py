"""Every optimization level gives the outputs of ORT_DISABLE_ALL on the repo's real models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import onnxmux

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common, models  # noqa: E402

LEVELS = list(onnxmux.GraphOptimizationLevel)


def _outputs(path: Path, feeds: dict, level) -> tuple[onnxmux.InferenceSession, list]:
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = level
    session = onnxmux.InferenceSession(str(path), options)
    return session, session.run(None, feeds)


@pytest.mark.parametrize(
    ("name", "exporter"), [("resnet18", "dynamo"), ("resnet18", models.UNFOLDED), ("bert", "dynamo"), ("bert", "legacy")]
)
def test_torch_models_at_every_level(name: str, exporter: str) -> None:
    pytest.importorskip("torch")
    path = models.MODELS[name](exporter)
    feeds = common.make_feeds(name, batch=2, seq=16, seed=3)
    _, reference = _outputs(path, feeds, onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for level in LEVELS[1:]:
        session, got = _outputs(path, feeds, level)
        np.testing.assert_allclose(got[0], reference[0], rtol=1e-4, atol=1e-5, err_msg=f"level {level.name}")
        ops = [n["op_type"] for n in session.get_execution_plan().to_dict()["nodes"]]
        if exporter == models.UNFOLDED:
            has_bn = "BatchNormalization" in ops
            assert has_bn == (level == onnxmux.GraphOptimizationLevel.ORT_ENABLE_BASIC), level.name


def test_unfolded_export_keeps_batch_normalization() -> None:
    pytest.importorskip("torch")
    import onnx

    graph = onnx.load(str(models.resnet18(models.UNFOLDED)), load_external_data=False).graph
    assert sum(n.op_type == "BatchNormalization" for n in graph.node) == 20


@pytest.mark.parametrize("kind", ["forest", "logreg", "lightgbm"])
@pytest.mark.parametrize("zipmap", [False, True])
def test_traditional_ml_models_at_every_level(kind: str, zipmap: bool) -> None:
    for module in ("sklearn", "skl2onnx", "lightgbm", "onnxmltools"):
        pytest.importorskip(module)
    from benchmarks import ml_models

    model = ml_models.load(ml_models.Spec(kind, "multiclass", zipmap, n_trees=20, max_depth=6))
    session = onnxmux.InferenceSession(str(model.path))
    feeds = {session.get_inputs()[0].name: model.x_test[:64]}
    _, reference = _outputs(model.path, feeds, onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for level in LEVELS[1:]:
        _, got = _outputs(model.path, feeds, level)
        np.testing.assert_array_equal(got[0], reference[0])
        if zipmap:
            assert got[1] == reference[1]
        else:
            np.testing.assert_allclose(got[1], reference[1], rtol=1e-6, atol=1e-7)
