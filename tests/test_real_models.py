"""Real torch-exported models (ResNet-18, a 4-layer BERT encoder) run by onnxmux match onnxruntime.

The models come from ``benchmarks/models.py`` and are exported once into its cache
(``.cache/models/`` or ``$ONNXMUX_MODEL_CACHE``); later runs only load them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import onnxmux  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common, models  # noqa: E402

RTOL = 1e-3
ATOL = 1e-4


def make_feeds(model: str, batch: int, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """The benchmarks' seeded inputs, with a short default sequence for BERT."""
    return common.make_feeds(model, batch, seq, seed)


@dataclass
class ModelRun:
    """Sessions over one cached model, and both runtimes' outputs of a first, batch-2 run."""

    name: str
    session: onnxmux.InferenceSession
    reference: ort.InferenceSession
    actual: np.ndarray
    expected: np.ndarray


@pytest.fixture(
    scope="module",
    params=[(m, e) for m in models.MODELS for e in models.EXPORTERS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def first_run(request: pytest.FixtureRequest) -> ModelRun:
    """Load one model in onnxmux and onnxruntime and run both on the same batch-2 feeds."""
    name, exporter = request.param
    path = str(models.MODELS[name](exporter))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    reference = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session = onnxmux.InferenceSession(path, providers=["cpu"])
    feeds = make_feeds(name, batch=2)
    (expected,) = reference.run(None, feeds)
    (actual,) = session.run(None, feeds)
    return ModelRun(name, session, reference, actual, expected)


def test_matches_onnxruntime(first_run: ModelRun) -> None:
    assert first_run.actual.dtype == first_run.expected.dtype
    np.testing.assert_allclose(first_run.actual, first_run.expected, rtol=RTOL, atol=ATOL)


def test_accepts_another_batch_size(first_run: ModelRun) -> None:
    name = first_run.name
    feeds = make_feeds(name, batch=1 if name == "resnet18" else 3, seq=9, seed=1)
    (expected,) = first_run.reference.run(None, feeds)
    (actual,) = first_run.session.run(None, feeds)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


HEAVY = {"Conv", "MatMul", "Gemm"}


def expected_copies(path: str) -> set[tuple[str, str]]:
    """(value, destination) pairs that must move when only Conv/MatMul/Gemm run on a device.

    Worked out from the ONNX file alone: a value crosses when its producer (the host, for graph
    inputs) and a consumer (the host, for graph outputs) sit on different sides; initializers are
    uploaded at session creation and are not run-time copies.
    """
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    side = {i.name: "host" for i in graph.input}
    for node in graph.node:
        for out in node.output:
            side[out] = "device" if node.op_type in HEAVY else "host"
    crossings = set()
    for node in graph.node:
        here = "device" if node.op_type in HEAVY else "host"
        for name in node.input:
            if name and name not in initializers and side.get(name, "host") != here:
                crossings.add((name, here))
    for out in graph.output:
        if side.get(out.name) == "device":
            crossings.add((out.name, "host"))
    return crossings


@pytest.mark.parametrize("name", list(models.MODELS))
def test_heavy_ops_on_a_device_match_the_cpu_with_the_expected_copies(name: str) -> None:
    path = str(models.MODELS[name]("legacy"))
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxmux.InferenceSession(path, options, providers=["heavy-device", "cpu"])
    plan = session.get_execution_plan().to_dict()
    on_device = {n["op_type"] for n in plan["nodes"] if n["provider"] == "HeavyOpsDeviceExecutionProvider"}
    assert on_device == HEAVY & {n["op_type"] for n in plan["nodes"]}
    got = {(c["value"], "device" if c["to"] == "heavydev:0" else "host") for c in plan["copies"]}
    assert len(got) == len(plan["copies"])
    assert got == expected_copies(path)
    feeds = make_feeds(name, batch=2)
    cpu = onnxmux.InferenceSession(path, options, providers=["cpu"]).run(None, feeds)[0]
    np.testing.assert_allclose(session.run(None, feeds)[0], cpu, rtol=1e-5, atol=1e-6)
