"""What ``benchmarks/run.py`` runs: every model of the suite, where it is cached and its inputs.

Three kinds: the neural networks of ``benchmarks/zoo.py`` (each by the exporters that handle
it), the traditional-ML models of ``benchmarks/ml_models.py`` at a batch of 256 rows (probability
tensors, no ZipMap), and a chain of 1,000 Adds of small tensors that measures per-node overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import ml_models, models, zoo

Feeds = dict[str, np.ndarray]
ML_BATCH = 256
CHAIN_NODES = 1000


@dataclass(frozen=True)
class Entry:
    """One suite model: its kind ("nn", "ml" or "chain"), the exporters it comes from
    (``("-",)`` where there is no choice), its path by exporter and its seeded inputs."""

    name: str
    kind: str
    exporters: tuple[str, ...]
    path: Callable[[str], Path]
    feeds: Callable[[], Feeds]


def _nn(name: str, model: zoo.Model) -> Entry:
    return Entry(name, "nn", models.EXPORTERS, model.path, lambda: model.feeds(np.random.default_rng(0)))


def _ml(name: str, kind: str) -> Entry:
    spec = ml_models.Spec(kind, "multiclass", zipmap=False)

    def feeds() -> Feeds:
        x_test = ml_models.make_data(spec.task)[2]
        return {ml_models.INPUT_NAME: np.ascontiguousarray(x_test[np.arange(ML_BATCH) % len(x_test)])}

    return Entry(name, "ml", ("-",), lambda _: ml_models.load(spec).path, feeds)


def add_chain_path(_: str = "-") -> Path:
    """The cached chain model: y_k = y_(k-1) + x for k = 1..1000 on a float32 [1, 16] input x."""
    import onnx
    from onnx import TensorProto, helper

    path = models.cache_dir() / f"add_chain{CHAIN_NODES}.onnx"
    if path.exists():
        return path
    names = ["x"] + [f"y{k}" for k in range(1, CHAIN_NODES + 1)]
    nodes = [helper.make_node("Add", [names[k], "x"], [names[k + 1]]) for k in range(CHAIN_NODES)]
    graph = helper.make_graph(
        nodes,
        "add_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    onnx.save(model, staging)
    staging.replace(path)
    return path


ENTRIES: dict[str, Entry] = {
    **{name: _nn(name, model) for name, model in zoo.SUITE.items()},
    "random_forest": _ml("random_forest", "forest"),
    "lightgbm": _ml("lightgbm", "lightgbm"),
    "logistic_regression": _ml("logistic_regression", "logreg"),
    "add_chain": Entry(
        "add_chain", "chain", ("-",), add_chain_path,
        lambda: {"x": np.random.default_rng(0).standard_normal((1, 16), dtype=np.float32)},
    ),
}  # fmt: skip
