"""Batch inference: both engines equal a plain session on the same rows, ids kept, resumable,
bad rows in dead letters without losing the rest."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

import onnxmux  # noqa: E402
from onnxmux.batch import ERROR_COLUMN, Predictor, predict  # noqa: E402
from onnxmux.cli import main as cli  # noqa: E402
from onnxmux.cli.demo import build_cnn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROWS_PER_SHARD = (40, 40, 23)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> tuple[Path, np.ndarray, Path]:
    """The demo CNN, 103 random images in three Parquet shards (tensor extension columns)."""
    folder = tmp_path_factory.mktemp("cnn")
    model = folder / "cnn.onnx"
    onnx.save(build_cnn(), model)
    images = np.random.default_rng(0).standard_normal((sum(ROWS_PER_SHARD), 3, 32, 32)).astype(np.float32)
    source = folder / "images"
    source.mkdir()
    start = 0
    for i, rows in enumerate(ROWS_PER_SHARD):
        column = pa.FixedShapeTensorArray.from_numpy_ndarray(images[start : start + rows])
        pq.write_table(pa.table({"image": column}), source / f"part-{i}.parquet")
        start += rows
    return model, images, source


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    """A small skl2onnx random forest (3 classes) and its rows as 20 numeric columns with a key."""
    pytest.importorskip("skl2onnx")
    from benchmarks import ml_models

    spec = ml_models.Spec("forest", "multiclass", zipmap=False, n_trees=10, max_depth=6)
    model = ml_models.load(spec)
    x = model.x_test[:150]
    source = tmp_path_factory.mktemp("forest") / "rows.parquet"
    columns = {f"f{j}": x[:, j].astype(np.float64) for j in range(x.shape[1])}
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(len(x))], **columns}), source, row_group_size=50)
    return model.path, x, source


def _read(folder: Path) -> pa.Table:
    return pq.read_table(folder)


def _probabilities(table: pa.Table, column: str) -> np.ndarray:
    return np.array(table.column(column).to_pylist(), dtype=np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_engine_equals_a_plain_session(cnn, tmp_path: Path, workers: int) -> None:
    model, images, source = cnn
    summary = predict(model, source, tmp_path / "out", batch_size=16, workers=workers)
    assert (summary.rows, summary.failed, summary.shards_written) == (len(images), 0, 3)
    table = _read(tmp_path / "out").sort_by("row_id")
    assert table.column("row_id").to_pylist() == list(range(len(images)))
    expected = onnxmux.InferenceSession(str(model)).run(None, {"image": images})[0]
    np.testing.assert_allclose(_probabilities(table, "probabilities"), expected, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"part-{i}.parquet" for i in range(3)]


def test_traditional_ml_model_from_numeric_columns_keeps_the_key(forest, tmp_path: Path) -> None:
    model, x, source = forest
    features = [f"f{j}" for j in range(x.shape[1])]
    summary = predict(model, source, tmp_path / "out", batch_size=32, inputs={"input": features}, key="id",
                      outputs={"label": "label", "probabilities": "proba"})
    assert summary.failed == 0
    table = _read(tmp_path / "out")
    assert table.column_names == ["id", "label", "proba"]
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(len(x))]
    label, proba = onnxmux.InferenceSession(str(model)).run(None, {"input": x})
    assert table.column("label").to_pylist() == label.tolist()
    np.testing.assert_allclose(_probabilities(table, "proba"), proba, atol=1e-6)


def test_bad_rows_go_to_dead_letters_and_the_rest_is_scored(cnn, tmp_path: Path) -> None:
    model, images, _ = cnn
    rows = [images[i].tolist() for i in range(6)]
    rows[2] = images[2][:, :16].tolist()  # wrong shape
    rows[4] = None  # no value
    source = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image": pa.array(rows)}), source)
    missing = tmp_path / "src"
    missing.mkdir()
    pq.write_table(pa.table({"image": pa.array(rows)}), missing / "a.parquet")
    pq.write_table(pa.table({"picture": pa.array(rows)}), missing / "b.parquet")

    summary = predict(model, source, tmp_path / "out", batch_size=4)
    assert (summary.rows, summary.failed) == (6, 2)
    good = _read(tmp_path / "out")
    assert good.column("row_id").to_pylist() == [0, 1, 3, 5]
    session = onnxmux.InferenceSession(str(model))
    expected = session.run(None, {"image": images[[0, 1, 3, 5]]})[0]
    np.testing.assert_allclose(_probabilities(good, "probabilities"), expected, rtol=1e-5, atol=1e-6)
    dead = pq.read_table(tmp_path / "out" / "_failed" / "bad.parquet")
    assert dead.column("row_id").to_pylist() == [2, 4]
    errors = dead.column("error").to_pylist()
    assert "dimension 2 must be 32" in errors[0] and "null" in errors[1]

    # a shard lacking the input's column is dead-lettered whole; the other shard is scored
    summary = predict(model, missing, tmp_path / "out2", batch_size=4)
    assert (summary.rows, summary.failed, summary.shards_written) == (12, 8, 2)
    dead = pq.read_table(tmp_path / "out2" / "_failed" / "b.parquet")
    assert dead.num_rows == 6 and "column 'image' is missing" in dead.column("error")[0].as_py()


def test_a_kernel_error_costs_only_its_row(tmp_path: Path) -> None:
    """Gather with an index out of range fails the batch's kernel; row by row only that row fails."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        "g",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    model = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    pq.write_table(pa.table({"idx": pa.array([1, 42, 3, 9])}), tmp_path / "d.parquet")
    summary = predict(model, tmp_path / "d.parquet", tmp_path / "out")
    assert (summary.rows, summary.failed) == (4, 1)
    good = _read(tmp_path / "out")
    assert good.column("row_id").to_pylist() == [0, 2, 3]
    np.testing.assert_array_equal(_probabilities(good, "y"), table[[1, 3, 9]])
    dead = pq.read_table(tmp_path / "out" / "_failed" / "d.parquet")
    assert dead.column("row_id").to_pylist() == [1] and "Gather" in dead.column("error")[0].as_py()


def test_interrupted_run_resumes_with_the_unfinished_shards(cnn, tmp_path: Path) -> None:
    model, images, source = cnn
    out = tmp_path / "out"

    def interrupt(shard: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(model, source, out, batch_size=16, workers=2, on_shard_done=interrupt)
    assert sorted(p.name for p in out.iterdir()) == ["part-0.parquet"]  # no partial shard left behind
    first = (out / "part-0.parquet").stat().st_mtime_ns
    summary = predict(model, source, out, batch_size=16)
    assert (summary.shards_skipped, summary.shards_written, summary.rows) == (1, 2, sum(ROWS_PER_SHARD[1:]))
    assert (out / "part-0.parquet").stat().st_mtime_ns == first
    table = _read(out).sort_by("row_id")
    assert table.column("row_id").to_pylist() == list(range(len(images)))
    expected = onnxmux.InferenceSession(str(model)).run(None, {"image": images})[0]
    np.testing.assert_allclose(_probabilities(table, "probabilities"), expected, rtol=1e-5, atol=1e-6)


def test_npy_folder_and_zipmap_outputs(cnn, forest, tmp_path: Path) -> None:
    model, images, _ = cnn
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(5):
        np.save(folder / f"img{i}.npy", images[i])
    predict(model, folder, tmp_path / "out", batch_size=2)
    table = _read(tmp_path / "out")
    assert table.column("file").to_pylist() == [f"img{i}.npy" for i in range(5)]
    expected = onnxmux.InferenceSession(str(model)).run(None, {"image": images[:5]})[0]
    np.testing.assert_allclose(_probabilities(table, "probabilities"), expected, rtol=1e-5, atol=1e-6)

    from benchmarks import ml_models

    zipmap = ml_models.load(ml_models.Spec("forest", "multiclass", zipmap=True, n_trees=10, max_depth=6))
    _, x, source = forest
    predict(zipmap.path, source, tmp_path / "zip", inputs={"input": [f"f{j}" for j in range(x.shape[1])]})
    maps = _read(tmp_path / "zip").column("output_probability").to_pylist()
    expected = onnxmux.InferenceSession(str(zipmap.path)).run(None, {"input": x})[1]
    assert [dict(m) for m in maps][:3] == pytest.approx(expected[:3])


def test_bad_arguments_are_clear_errors(cnn, tmp_path: Path) -> None:
    model, _, source = cnn
    with pytest.raises(onnxmux.InvalidArgument, match="engine 'spark'"):
        predict(model, source, tmp_path / "o", engine="spark")
    with pytest.raises(onnxmux.InvalidArgument, match="batch_size"):
        predict(model, source, tmp_path / "o", batch_size=0)
    with pytest.raises(onnxmux.InvalidArgument, match="not a model input"):
        predict(model, source, tmp_path / "o", inputs={"pixels": ["image"]})
    with pytest.raises(onnxmux.InvalidArgument, match="does not exist"):
        predict(model, tmp_path / "nowhere", tmp_path / "o")


def test_cli_reports_failed_rows_in_its_exit_status(cnn, tmp_path: Path, capsys) -> None:
    model, images, source = cnn
    assert cli(["batch", str(model), str(source), str(tmp_path / "ok"), "--batch-size", "32"]) == 0
    assert "103 rows" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image": pa.array([images[0].tolist(), None])}), bad)
    assert cli(["batch", str(model), str(bad), str(tmp_path / "bad")]) == 1
    assert "1 rows failed" in capsys.readouterr().err
    assert cli(["batch", str(model), str(bad), str(tmp_path / "x"), "--input", "image"]) == 2


def test_predictor_result_schema_is_fixed_by_the_model(cnn) -> None:
    """Every batch has the same schema, failed rows or not, so Ray can concatenate results."""
    model, images, _ = cnn
    predictor = Predictor(str(model))
    ok = predictor(pa.table({"image": pa.FixedShapeTensorArray.from_numpy_ndarray(images[:2])}))
    failed = predictor(pa.table({"image": pa.array([None, None], pa.list_(pa.float32()))}))
    assert ok.schema == failed.schema == predictor.schema()
    assert failed.column(ERROR_COLUMN).null_count == 0


def test_ray_engine_equals_the_local_engine(cnn, forest, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data] (the test extra installs it)")
    model, images, source = cnn
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = predict(model, source, tmp_path / "ray", batch_size=16, engine="ray", workers=2)
        assert (summary.rows, summary.failed, summary.shards_written) == (len(images), 0, 3)
        predict(model, source, tmp_path / "local", batch_size=16)
        assert _read(tmp_path / "ray").equals(_read(tmp_path / "local"))

        forest_model, x, rows = forest
        features = {"input": [f"f{j}" for j in range(x.shape[1])]}
        predict(forest_model, rows, tmp_path / "fr", engine="ray", workers=2, inputs=features, key="id")
        predict(forest_model, rows, tmp_path / "fl", inputs=features, key="id")
        assert _read(tmp_path / "fr").equals(_read(tmp_path / "fl"))
    finally:
        ray.shutdown()
