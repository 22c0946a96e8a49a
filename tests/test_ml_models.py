"""Real converter-made traditional-ML models run by onnxmux match their library and onnxruntime.

The models (a scikit-learn random forest and scaler + logistic-regression pipeline via skl2onnx,
a LightGBM classifier via onnxmltools; 3-class and binary; with and without ZipMap) come from
``benchmarks/ml_models.py``, here with fewer trees than the benchmark uses so that a first run
trains and converts them all in a few seconds; they are cached like the benchmark's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")
ort = pytest.importorskip("onnxruntime")

import onnxmux  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import ml_models  # noqa: E402

ATOL = 1e-5
TEST_TREES = 20
TEST_DEPTH = 8

SPECS = [
    ml_models.Spec(kind, task, zipmap, n_trees=TEST_TREES, max_depth=TEST_DEPTH)
    for kind in ml_models.KINDS
    for task in ml_models.TASKS
    for zipmap in (False, True)
]


@dataclass
class Outputs:
    """A model, onnxmux's and onnxruntime's raw outputs on its held-out rows, and the sessions."""

    model: ml_models.MLModel
    session: onnxmux.InferenceSession
    reference: ort.InferenceSession
    actual: list[Any]
    expected: list[Any]


def onnxruntime_session(path: Path) -> ort.InferenceSession:
    """An onnxruntime CPU session that does not log onnxmltools' declared label shape ``[1]``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probabilities(value: Any, classes: np.ndarray) -> np.ndarray:
    """A ``[N, classes]`` array from a probability tensor or a ZipMap list of dicts (columns in class order)."""
    if isinstance(value, list):
        return np.array([[row[c] for c in classes.tolist()] for row in value])
    return np.asarray(value)


@pytest.fixture(scope="module", params=SPECS, ids=lambda s: s.name)
def outputs(request: pytest.FixtureRequest) -> Outputs:
    """Load (training and converting first if needed) one model; run both runtimes on its test rows."""
    model = ml_models.load(request.param)
    session = onnxmux.InferenceSession(str(model.path), providers=["cpu"])
    reference = onnxruntime_session(model.path)
    feed = {ml_models.INPUT_NAME: model.x_test}
    return Outputs(model, session, reference, session.run(None, feed), reference.run(None, feed))


def test_model_layout(outputs: Outputs) -> None:
    """The converter produced what the spec asks for: two outputs, ZipMap only when requested."""
    ops = {node.op_type for node in onnx.load(str(outputs.model.path)).graph.node}
    assert ("ZipMap" in ops) == outputs.model.spec.zipmap
    assert {"TreeEnsembleClassifier", "LinearClassifier"} & ops
    assert [o.name for o in outputs.session.get_outputs()] == [o.name for o in outputs.reference.get_outputs()]


def test_labels_match_library_predict(outputs: Outputs) -> None:
    """onnxmux's labels are the library's ``predict`` on all 500 held-out rows."""
    labels, _ = outputs.model.reference()
    np.testing.assert_array_equal(np.asarray(outputs.actual[0]).reshape(-1), labels)


def test_probabilities_match_library_predict_proba(outputs: Outputs) -> None:
    """onnxmux's probabilities are the library's ``predict_proba`` within ``ATOL``."""
    _, expected = outputs.model.reference()
    actual = probabilities(outputs.actual[1], outputs.model.estimator.classes_)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_matches_onnxruntime(outputs: Outputs) -> None:
    """Same labels (values and dtype) and probabilities (values, dtype, ZipMap keys) as onnxruntime."""
    (labels, probs), (ref_labels, ref_probs) = outputs.actual, outputs.expected
    np.testing.assert_array_equal(np.asarray(labels).reshape(-1), np.asarray(ref_labels).reshape(-1))
    assert np.asarray(labels).dtype == np.asarray(ref_labels).dtype
    assert isinstance(probs, list) == isinstance(ref_probs, list)
    if isinstance(ref_probs, list):
        assert len(probs) == len(ref_probs)
        assert all(isinstance(row, dict) for row in probs)
        assert [list(row) for row in probs] == [list(row) for row in ref_probs]
    else:
        assert probs.dtype == ref_probs.dtype
    classes = outputs.model.estimator.classes_
    np.testing.assert_allclose(probabilities(probs, classes), probabilities(ref_probs, classes), rtol=0, atol=ATOL)


def test_single_row_matches_onnxruntime(outputs: Outputs) -> None:
    """A batch of one row gives onnxruntime's label and probabilities."""
    feed = {ml_models.INPUT_NAME: outputs.model.x_test[:1]}
    (labels, probs), (ref_labels, ref_probs) = outputs.session.run(None, feed), outputs.reference.run(None, feed)
    np.testing.assert_array_equal(np.asarray(labels).reshape(-1), np.asarray(ref_labels).reshape(-1))
    classes = outputs.model.estimator.classes_
    np.testing.assert_allclose(probabilities(probs, classes), probabilities(ref_probs, classes), rtol=0, atol=ATOL)
