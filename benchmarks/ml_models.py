"""Traditional-ML ONNX models made by the real converters, for onnxmux's tests and benchmarks.

Three classifiers are trained on seeded synthetic data (``sklearn.datasets.make_classification``,
2000 rows x 20 features; a 3-class and a binary task; the last 500 rows are held out):

* ``forest``: a scikit-learn ``RandomForestClassifier`` (100 trees, ``max_depth=10``),
  converted by skl2onnx (``TreeEnsembleClassifier``).
* ``logreg``: a scikit-learn ``StandardScaler`` + ``LogisticRegression`` pipeline, converted by
  skl2onnx (``Scaler``, ``LinearClassifier``, and ``Normalizer`` for 3 classes).
* ``lightgbm``: a LightGBM ``LGBMClassifier`` (100 boosting rounds), converted by onnxmltools
  (``TreeEnsembleClassifier``).

Each model comes with a ZipMap (the converters' default: the probabilities are a list of
``{class: probability}`` dicts) and without (the probabilities are a ``[N, classes]`` tensor).

Opsets: skl2onnx is asked for ``{"": 17, "ai.onnx.ml": 3}`` (the newest ai.onnx.ml opset it
knows), but it declares the lowest opsets its nodes need, so the models import ai.onnx.ml 1
(its random-forest converter always writes ``TreeEnsembleClassifier`` version 1). onnxmltools
takes no per-domain opset and uses its newest (ai.onnx.ml 1, default domain 9 here). Neither
converter (skl2onnx 1.20, onnxmltools 1.16) can write the ai.onnx.ml 5 ``TreeEnsemble`` op:
asking skl2onnx for ai.onnx.ml 5 yields the same ``TreeEnsembleClassifier`` model
(onnx/sklearn-onnx#1160), so there is no ``TreeEnsemble`` variant.

Every model is converted once and cached under ``.cache/models/`` at the repository root
(git-ignored), or under the folder named by ``ONNXMUX_MODEL_CACHE``, as ``<name>.onnx`` beside
``<name>.pkl``: a pickle of the fitted estimator (the reference for ``predict`` and
``predict_proba``), the library versions and the training recipe. A cached pair whose versions
or recipe differ from the current ones is rebuilt. Both files are written under temporary names
and renamed into place, the ``.onnx`` last. The pickles are only ever read from this cache,
which this module writes itself.

Run ``python benchmarks/ml_models.py`` to build every model and print its size and node types.
"""

from __future__ import annotations

import collections
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent

KINDS = ("forest", "logreg", "lightgbm")
TASKS = ("multiclass", "binary")
INPUT_NAME = "input"

N_SAMPLES = 2000
N_FEATURES = 20
N_TEST = 500
SEED = 0

N_TREES = 100
MAX_DEPTH = 10
SKL2ONNX_OPSETS = {"": 17, "ai.onnx.ml": 3}


def cache_dir() -> Path:
    """The folder models are cached in: ``$ONNXMUX_MODEL_CACHE`` or ``<repo>/.cache/models``."""
    override = os.environ.get("ONNXMUX_MODEL_CACHE")
    return Path(override) if override else REPO_ROOT / ".cache" / "models"


@dataclass(frozen=True)
class Spec:
    """Which model to build: estimator kind, task, ZipMap or not, and size (``n_trees`` for the
    forest and LightGBM, ``max_depth`` for the forest; LightGBM keeps its default 31 leaves)."""

    kind: str
    task: str
    zipmap: bool
    n_trees: int = N_TREES
    max_depth: int = MAX_DEPTH

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")

    @property
    def name(self) -> str:
        """The cache file stem, naming every setting the kind uses, e.g. ``forest100d10-multiclass-zipmap``."""
        size = {"forest": f"{self.n_trees}d{self.max_depth}", "lightgbm": str(self.n_trees)}.get(self.kind, "")
        return f"{self.kind}{size}-{self.task}-{'zipmap' if self.zipmap else 'tensor'}"


@dataclass
class MLModel:
    """A converted model on disk, the fitted estimator it came from, and its held-out rows."""

    spec: Spec
    path: Path
    estimator: Any
    x_test: np.ndarray

    def reference(self, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The library's ``predict`` labels and ``predict_proba`` probabilities on ``x`` (default: held-out rows)."""
        x = self.x_test if x is None else x
        return np.asarray(self.estimator.predict(x)), np.asarray(self.estimator.predict_proba(x))


def make_data(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded float32 ``x_train, y_train, x_test, y_test``; the last ``N_TEST`` rows are the test set."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=N_SAMPLES,
        n_features=N_FEATURES,
        n_informative=10,
        n_redundant=4,
        n_classes=3 if task == "multiclass" else 2,
        random_state=SEED,
    )
    x = x.astype(np.float32)
    split = N_SAMPLES - N_TEST
    return x[:split], y[:split], x[split:], y[split:]


def train(spec: Spec, x: np.ndarray, y: np.ndarray) -> Any:
    """Fit the estimator ``spec`` names on ``x, y``, single-threaded and seeded."""
    if spec.kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(
            n_estimators=spec.n_trees, max_depth=spec.max_depth, n_jobs=1, random_state=SEED
        )
    elif spec.kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(
            n_estimators=spec.n_trees,
            n_jobs=1,
            random_state=SEED,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
    return model.fit(x, y)


def convert(spec: Spec, estimator: Any) -> Any:
    """Convert a fitted estimator to an ``onnx.ModelProto`` with skl2onnx or onnxmltools."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.kind == "lightgbm":
            import onnxmltools
            from onnxmltools.convert.common.data_types import FloatTensorType

            return onnxmltools.convert_lightgbm(
                estimator,
                initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
                zipmap=spec.zipmap,
            )
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        return convert_sklearn(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
            target_opset=SKL2ONNX_OPSETS,
            options={id(estimator): {"zipmap": spec.zipmap}},
        )


def library_versions(spec: Spec) -> dict[str, str]:
    """Versions of the packages that trained and converted ``spec``'s model."""
    from importlib.metadata import version

    packages = ["scikit-learn", "onnx"]
    packages += ["lightgbm", "onnxmltools"] if spec.kind == "lightgbm" else ["skl2onnx"]
    return {package: version(package) for package in packages}


def recipe(spec: Spec) -> dict[str, Any]:
    """The model name (kind, sizes, task, ZipMap), data shape, opsets and library versions, compared
    when loading cached files; other training choices in this module's code are not, so clear
    the cache after changing them."""
    return {
        "name": spec.name,
        "data": (N_SAMPLES, N_FEATURES, N_TEST, SEED),
        "opsets": SKL2ONNX_OPSETS,
        "versions": library_versions(spec),
    }


def load(spec: Spec) -> MLModel:
    """The model ``spec`` names, trained and converted first when the cache lacks a current copy."""
    x_train, y_train, x_test, _ = make_data(spec.task)
    folder = cache_dir()
    path = folder / f"{spec.name}.onnx"
    current = recipe(spec)
    estimator = _read_cached(path, current)
    if estimator is None:
        estimator = train(spec, x_train, y_train)
        model = convert(spec, estimator)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"recipe": current, "estimator": estimator}
        _write_atomic(path.with_suffix(".pkl"), lambda f: pickle.dump(payload, f))
        _write_atomic(path, lambda f: f.write(model.SerializeToString()))
    return MLModel(spec, path, estimator, x_test)


def _read_cached(path: Path, expected_recipe: dict[str, Any]) -> Any | None:
    """The estimator pickled beside ``path``, or None when either file is missing or stale."""
    pickled = path.with_suffix(".pkl")
    if not (path.exists() and pickled.exists()):
        return None
    try:
        with pickled.open("rb") as f:
            payload = pickle.load(f)
    except Exception:  # an unreadable pickle (e.g. from another library version): rebuild
        return None
    return payload["estimator"] if payload.get("recipe") == expected_recipe else None


def _write_atomic(path: Path, write: Callable[[Any], Any]) -> None:
    """Write a binary file through ``write(file)`` under a temporary name, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


ALL_SPECS: list[Spec] = [Spec(k, t, z) for k in KINDS for t in TASKS for z in (False, True)]


def main() -> None:
    """Build every model; print its path, file size, opsets and node types."""
    import onnx

    for spec in ALL_SPECS:
        model = load(spec)
        proto = onnx.load(str(model.path))
        ops = collections.Counter(node.op_type for node in proto.graph.node)
        opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)
        size_kib = model.path.stat().st_size / 1024
        print(f"{spec.name:28s} {size_kib:8.0f} KiB  {model.path}")
        print(f"    opsets: {opsets}; nodes: {', '.join(f'{op} {n}' for op, n in sorted(ops.items()))}")


if __name__ == "__main__":
    main()
