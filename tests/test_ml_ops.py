"""ai.onnx.ml, string and training kernels on tiny models, against hand-computed expectations."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import onnxmux

ML = "ai.onnx.ml"


def _input_info(name: str, value) -> onnx.ValueInfoProto:
    if isinstance(value, tuple):
        return helper.make_value_info(name, value[0])
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)


def run_node(op_type, feeds, n_outputs=1, domain=ML, opset=3, **attrs):
    """Run one node on ``feeds`` (arrays, or (TypeProto, value) pairs for maps); returns its outputs."""
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, list(feeds), outputs, domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [_input_info(name, value) for name, value in feeds.items()],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
    )
    opsets = [helper.make_opsetid("", 20)]
    if domain:
        opsets.append(helper.make_opsetid(domain, opset))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    session = onnxmux.InferenceSession(model.SerializeToString())
    return session.run(None, {name: v[1] if isinstance(v, tuple) else v for name, v in feeds.items()})


def stump_forest(prefix: str, weights: list[tuple[int, int, int, float]], **extra) -> dict:
    """Two trees over feature 0: tree 0 splits at 0.5 (node 1 true, node 2 false), tree 1
    is a single leaf. ``weights`` are (tree, node, target, weight)."""
    attrs = dict(
        nodes_treeids=[0, 0, 0, 1],
        nodes_nodeids=[0, 1, 2, 0],
        nodes_featureids=[0, 0, 0, 0],
        nodes_values=[0.5, 0.0, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0, 0],
        nodes_falsenodeids=[2, 0, 0, 0],
    )
    for i, field in enumerate(["treeids", "nodeids", "ids", "weights"]):
        attrs[f"{prefix}_{field}"] = [w[i] for w in weights]
    attrs.update(extra)
    return attrs


X_STUMP = np.array([[0.0], [1.0], [np.nan]], np.float32)


@pytest.mark.parametrize(
    "aggregate, expected",
    [
        ("SUM", [[1.0 + 4.0], [2.0 + 4.0], [2.0 + 4.0]]),
        ("AVERAGE", [[2.5], [3.0], [3.0]]),
        ("MIN", [[1.0], [2.0], [2.0]]),
        ("MAX", [[4.0], [4.0], [4.0]]),
    ],
)
def test_tree_regressor_aggregates(aggregate, expected):
    weights = [(0, 1, 0, 1.0), (0, 2, 0, 2.0), (1, 0, 0, 4.0)]
    attrs = stump_forest("target", weights, n_targets=1, aggregate_function=aggregate)
    (y,) = run_node("TreeEnsembleRegressor", {"X": X_STUMP}, **attrs)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected)


def test_tree_regressor_missing_track_base_values_and_double_thresholds():
    attrs = stump_forest("target", [(0, 1, 0, 1.0), (0, 2, 1, 2.0), (1, 0, 0, 4.0)], n_targets=2)
    del attrs["nodes_values"]
    attrs["nodes_values_as_tensor"] = helper.make_tensor("v", TP.DOUBLE, (4,), [0.5, 0, 0, 0])
    attrs["nodes_missing_value_tracks_true"] = [1, 0, 0, 0]
    attrs["base_values"] = [10.0, 20.0]
    (y,) = run_node("TreeEnsembleRegressor", {"X": X_STUMP}, **attrs)
    # NaN follows the true branch (track 1) like x <= 0.5.
    np.testing.assert_allclose(y, [[15.0, 20.0], [14.0, 22.0], [15.0, 20.0]])


def test_tree_classifier_multiclass_softmax():
    weights = [(0, 1, 0, 2.0), (0, 2, 2, 1.0), (1, 0, 1, 0.5)]
    attrs = stump_forest("class", weights, classlabels_strings=["a", "b", "c"], post_transform="SOFTMAX")
    label, z = run_node("TreeEnsembleClassifier", {"X": X_STUMP[:2]}, 2, **attrs)
    assert label.tolist() == ["a", "c"]
    scores = np.array([[2.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(z, expected, rtol=1e-6)
    assert z.dtype == np.float32


def test_tree_classifier_binary_single_score_logistic():
    weights = [(0, 1, 0, -1.5), (0, 2, 0, 2.0), (1, 0, 0, 0.25)]
    attrs = stump_forest("class", weights, classlabels_int64s=[3, 9], post_transform="LOGISTIC", base_values=[0.5])
    label, z = run_node("TreeEnsembleClassifier", {"X": X_STUMP[:2]}, 2, **attrs)
    margin = np.array([-1.5 + 0.25 + 0.5, 2.0 + 0.25 + 0.5])
    assert label.tolist() == [3, 9]
    p = 1 / (1 + np.exp(-margin))
    np.testing.assert_allclose(z, np.stack([1 - p, p], axis=1), rtol=1e-6)


def test_tree_classifier_binary_probabilities():
    attrs = stump_forest("class", [(0, 1, 0, 0.2), (0, 2, 0, 0.9)], classlabels_int64s=[0, 1])
    label, z = run_node("TreeEnsembleClassifier", {"X": X_STUMP[:2]}, 2, **attrs)
    assert label.tolist() == [0, 1]
    np.testing.assert_allclose(z, [[0.8, 0.2], [0.1, 0.9]], rtol=1e-6)


def _tree_ensemble_v5(**extra) -> dict:
    """One tree: node 0 `x0 <= 1` -> node 1 (x1 in {2, 3}? leaf 0 : leaf 1), else leaf 2."""
    attrs = dict(
        n_targets=2,
        tree_roots=[0],
        nodes_modes=helper.make_tensor("m", TP.UINT8, (2,), [0, 6]),
        nodes_featureids=[0, 1],
        nodes_splits=helper.make_tensor("s", TP.DOUBLE, (2,), [1.0, 0.0]),
        nodes_truenodeids=[1, 0],
        nodes_trueleafs=[0, 1],
        nodes_falsenodeids=[2, 1],
        nodes_falseleafs=[1, 1],
        membership_values=helper.make_tensor("mv", TP.DOUBLE, (3,), [2.0, 3.0, np.nan]),
        leaf_targetids=[0, 1, 1],
        leaf_weights=helper.make_tensor("w", TP.DOUBLE, (3,), [1.0, 2.0, 3.0]),
    )
    attrs.update(extra)
    return attrs


def test_tree_ensemble_v5_membership_and_probit():
    x = np.array([[0.0, 3.0], [0.0, 4.0], [5.0, 2.0]], np.float64)
    (y,) = run_node("TreeEnsemble", {"X": x}, opset=5, **_tree_ensemble_v5())
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [[1.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    weights = helper.make_tensor("w", TP.DOUBLE, (3,), [0.1, 0.6, 0.3])
    (y,) = run_node("TreeEnsemble", {"X": x[:1]}, opset=5, **_tree_ensemble_v5(post_transform=4, leaf_weights=weights))
    # PROBIT is the standard normal quantile; target 1 gets no weight, and probit(0) = -inf.
    np.testing.assert_allclose(y, [[NormalDist().inv_cdf(0.1), -np.inf]], rtol=1e-5)


def test_tree_ensemble_v5_rejects_bad_mode():
    attrs = _tree_ensemble_v5(nodes_modes=helper.make_tensor("m", TP.UINT8, (2,), [0, 9]))
    with pytest.raises(onnxmux.InvalidGraph):
        run_node("TreeEnsemble", {"X": np.zeros((1, 2))}, opset=5, **attrs)


X_LIN = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)


def test_linear_classifier_multiclass_and_binary():
    coefficients = [1.0, 0.0, 0.0, 1.0, -1.0, -1.0]
    intercepts = [0.0, 0.5, 2.0]
    attrs = dict(coefficients=coefficients, intercepts=intercepts, classlabels_ints=[4, 5, 6])
    label, z = run_node("LinearClassifier", {"X": X_LIN}, 2, **attrs)
    np.testing.assert_allclose(z, X_LIN @ np.array(coefficients).reshape(3, 2).T + intercepts, rtol=1e-6)
    assert label.tolist() == [5, 6]
    attrs = dict(coefficients=[0.5, -0.25], intercepts=[0.1], classlabels_strings=["neg", "pos"])
    attrs["post_transform"] = "LOGISTIC"
    label, z = run_node("LinearClassifier", {"X": X_LIN}, 2, **attrs)
    p = 1 / (1 + np.exp(-(X_LIN @ [0.5, -0.25] + 0.1)))
    assert label.tolist() == ["pos", "neg"]
    np.testing.assert_allclose(z, np.stack([1 - p, p], axis=1), rtol=1e-6)


def test_linear_regressor_targets():
    attrs = dict(coefficients=[1.0, 2.0, 3.0, 4.0], intercepts=[1.0, -1.0], targets=2)
    (y,) = run_node("LinearRegressor", {"X": X_LIN}, **attrs)
    np.testing.assert_allclose(y, X_LIN @ np.array([[1.0, 2.0], [3.0, 4.0]]).T + [1.0, -1.0])


def test_svm_classifier_one_vs_one_votes():
    # Linear kernel, one support vector per class.
    sv = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    coefficients = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]])
    rho = [0.1, -0.2, 0.0]
    label, z = run_node(
        "SVMClassifier",
        {"X": X_LIN},
        2,
        vectors_per_class=[1, 1, 1],
        support_vectors=sv.ravel().tolist(),
        coefficients=coefficients.ravel().tolist(),
        rho=rho,
        kernel_type="LINEAR",
        classlabels_ints=[0, 1, 2],
    )
    k = X_LIN.astype(np.float64) @ sv.T
    # Pair (i, j) weighs class i's vector by row j-1 and class j's by row i.
    dec = np.stack(
        [
            k[:, 0] * coefficients[0, 0] + k[:, 1] * coefficients[0, 1] + rho[0],
            k[:, 0] * coefficients[1, 0] + k[:, 2] * coefficients[0, 2] + rho[1],
            k[:, 1] * coefficients[1, 1] + k[:, 2] * coefficients[1, 2] + rho[2],
        ],
        axis=1,
    )
    np.testing.assert_allclose(z, dec, rtol=1e-6)
    votes = np.zeros((2, 3))
    for p, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
        votes[:, i] += dec[:, p] > 0
        votes[:, j] += dec[:, p] <= 0
    assert label.tolist() == votes.argmax(axis=1).tolist()


def test_svm_regressor_rbf_and_one_class():
    sv = np.array([[0.0, 0.0], [1.0, 1.0]])
    attrs = dict(
        support_vectors=sv.ravel().tolist(),
        coefficients=[1.0, -2.0],
        rho=[0.5],
        n_supports=2,
        kernel_type="RBF",
        kernel_params=[0.5, 0.0, 0.0],
    )
    (y,) = run_node("SVMRegressor", {"X": X_LIN}, **attrs)
    expected = np.exp(-0.5 * ((X_LIN[:, None, :] - sv[None]) ** 2).sum(-1)) @ [1.0, -2.0] + 0.5
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6)
    (y,) = run_node("SVMRegressor", {"X": X_LIN}, one_class=1, **attrs)
    np.testing.assert_array_equal(y[:, 0], np.where(expected > 0, 1.0, -1.0))


@pytest.mark.parametrize(
    "norm, divisor",
    [("MAX", lambda x: x.max(1)), ("L1", lambda x: np.abs(x).sum(1)), ("L2", lambda x: np.sqrt((x * x).sum(1)))],
)
def test_normalizer(norm, divisor):
    x = np.array([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    (y,) = run_node("Normalizer", {"X": x}, norm=norm)
    np.testing.assert_allclose(y[0], x[0] / divisor(x)[0], rtol=1e-6)
    np.testing.assert_array_equal(y[1], 0.0)


def test_scaler_and_imputer():
    x = np.array([[1, 2], [3, 4]], np.int64)
    (y,) = run_node("Scaler", {"X": x}, offset=[1.0, 2.0], scale=[0.5])
    np.testing.assert_allclose(y, (x - [1.0, 2.0]) * 0.5)
    assert y.dtype == np.float32
    x = np.array([[np.nan, 1.0], [2.0, np.nan]], np.float32)
    (y,) = run_node("Imputer", {"X": x}, replaced_value_float=np.nan, imputed_value_floats=[7.0, 8.0])
    np.testing.assert_array_equal(y, [[7.0, 1.0], [2.0, 8.0]])


def test_one_hot_encoder():
    (y,) = run_node("OneHotEncoder", {"X": np.array([[3, 8]], np.int64)}, cats_int64s=[8, 3, 5])
    np.testing.assert_array_equal(y, [[[0, 1, 0], [1, 0, 0]]])
    with pytest.raises(onnxmux.RuntimeFailure):
        run_node("OneHotEncoder", {"X": np.array([4], np.int64)}, cats_int64s=[8], zeros=0)


def test_label_encoders():
    strings = np.array(["b", "x", "a"], dtype=object)
    (y,) = run_node("LabelEncoder", {"X": strings}, opset=1, classes_strings=["a", "b"])
    assert y.tolist() == [1, -1, 0]
    (y,) = run_node("LabelEncoder", {"X": np.array([1, 7], np.int64)}, opset=1, classes_strings=["a", "b"])
    assert y.tolist() == ["b", "_Unused"]
    x = np.array([0.5, np.nan, 2.0], np.float32)
    (y,) = run_node("LabelEncoder", {"X": x}, opset=2, keys_floats=[0.5, np.nan], values_int64s=[1, 2])
    assert y.tolist() == [1, 2, -1]
    # Opset 4: a repeated key maps to its last value.
    attrs = dict(keys_int64s=[3, 3], values_floats=[1.0, 2.0])
    (y,) = run_node("LabelEncoder", {"X": np.array([3, 4], np.int64)}, opset=4, **attrs)
    assert y.dtype == np.float32 and y.tolist() == [2.0, -0.0]


def test_category_mapper_both_ways():
    attrs = dict(cats_strings=["cat", "dog"], cats_int64s=[1, 2], opset=1)
    (y,) = run_node("CategoryMapper", {"X": np.array(["dog", "cow"], dtype=object)}, **attrs)
    assert y.tolist() == [2, -1]
    (y,) = run_node("CategoryMapper", {"X": np.array([[1, 5]], np.int64)}, **attrs)
    assert y.tolist() == [["cat", "_Unused"]]


def _map_type(key: int, value: int) -> onnx.TypeProto:
    return helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, None))


def test_dict_vectorizer_and_cast_map():
    feed = (_map_type(TP.STRING, TP.FLOAT), {"a": 4.0, "c": 8.0})
    (y,) = run_node("DictVectorizer", {"X": feed}, opset=1, string_vocabulary=["a", "c", "b"])
    np.testing.assert_array_equal(y, [[4.0, 8.0, 0.0]])
    assert y.dtype == np.float32
    feed = (_map_type(TP.INT64, TP.FLOAT), {3: 1.5, 0: -1.0})
    (y,) = run_node("CastMap", {"X": feed}, opset=1, cast_to="TO_INT64")
    np.testing.assert_array_equal(y, [[-1, 1]])
    (y,) = run_node("CastMap", {"X": feed}, opset=1, map_form="SPARSE", max_map=4)
    np.testing.assert_array_equal(y, [[-1.0, 0.0, 0.0, 1.5]])


def test_feature_vectorizer_array_feature_extractor_zipmap():
    feeds = {"A": np.array([[1.0, 2.0]], np.float32), "B": np.array([[3, 4, 5]], np.float32)}
    (y,) = run_node("FeatureVectorizer", feeds, opset=1, inputdimensions=[3, 2])
    np.testing.assert_array_equal(y, [[1.0, 2.0, 0.0, 3.0, 4.0]])
    feeds = {"X": np.arange(6, dtype=np.int64).reshape(2, 3), "I": np.array([2, 0], np.int64)}
    (z,) = run_node("ArrayFeatureExtractor", feeds, opset=1)
    np.testing.assert_array_equal(z, [[2, 0], [5, 3]])
    (z,) = run_node("ZipMap", {"X": np.array([[0.25, 0.75]], np.float32)}, opset=1, classlabels_strings=["no", "yes"])
    assert z == [{"no": 0.25, "yes": 0.75}]


def test_string_split_and_regex():
    x = np.array(["a,b", "", "c"], dtype=object)
    pieces, counts = run_node("StringSplit", {"X": x}, 2, domain="", delimiter=",")
    assert pieces.tolist() == [["a", "b"], ["", ""], ["c", ""]]
    assert counts.tolist() == [2, 0, 1]
    # RE2's \w is ASCII-only.
    (y,) = run_node("RegexFullMatch", {"X": np.array(["ab_1", "é"], dtype=object)}, domain="", pattern=r"\w+")
    assert y.tolist() == [True, False]


@pytest.mark.parametrize("mode, expected", [("TF", [2, 2, 2]), ("IDF", [2, 3, 5]), ("TFIDF", [4, 6, 10])])
def test_tfidf_strings_with_skips(mode, expected):
    tokens = np.array([["a", "b", "c", "a", "c"]], dtype=object)
    attrs = dict(
        min_gram_length=1,
        max_gram_length=2,
        max_skip_count=1,
        ngram_counts=[0, 2],
        ngram_indexes=[0, 1, 2],
        pool_strings=["a", "c", "a", "c"],
        weights=[2.0, 3.0, 5.0],
    )
    # "a" and "c" twice each; bigram (a, c) at positions 3-4 (no skip) and 0-2 (one skip).
    (y,) = run_node("TfIdfVectorizer", {"X": tokens}, domain="", mode=mode, **attrs)
    np.testing.assert_array_equal(y, [expected])


def test_string_normalizer_case_insensitive_stopwords():
    x = np.array([["Stop", "Straße", "keep"]], dtype=object)
    (y,) = run_node("StringNormalizer", {"X": x}, domain="", stopwords=["STOP"], case_change_action="UPPER")
    assert y.tolist() == [["STRASSE", "KEEP"]]


def test_momentum_multiple_tensors():
    feeds = {
        "R": np.array(0.1, np.float32),
        "T": np.array(1, np.int64),
        "X1": np.array([1.0], np.float32),
        "X2": np.array([1.0, 2.0], np.float32),
        "G1": np.array([0.5], np.float32),
        "G2": np.array([-1.0, 1.0], np.float32),
        "V1": np.array([0.2], np.float32),
        "V2": np.array([0.0, 1.0], np.float32),
    }
    attrs = dict(norm_coefficient=0.0, alpha=0.9, beta=0.5, mode="standard")
    results = run_node("Momentum", feeds, 4, domain="ai.onnx.preview.training", opset=1, **attrs)
    v1, v2 = 0.9 * feeds["V1"] + 0.5 * feeds["G1"], 0.9 * feeds["V2"] + 0.5 * feeds["G2"]
    for got, want in zip(results, [feeds["X1"] - 0.1 * v1, feeds["X2"] - 0.1 * v2, v1, v2]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
