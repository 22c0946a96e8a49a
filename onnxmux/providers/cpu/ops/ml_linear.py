"""Linear and kernel models of ai.onnx.ml, plus per-feature preprocessing.

LinearClassifier, LinearRegressor, SVMClassifier, SVMRegressor, Normalizer, Scaler,
Binarizer and Imputer. The score post-transforms (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO,
PROBIT) and class-label parsing defined here are shared with the tree ensembles.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op

ML = "ai.onnx.ml"

#: A post-transform: (N, K) float64 scores -> transformed (N, K) scores.
ScoreTransform = Callable[[Any], Any]

_SQRT2 = float(np.sqrt(2.0))

# Coefficients of M. Giles' single-precision erfinv approximation, highest degree first.
_ERFINV_CENTRAL = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)


def _polyval(coefficients: tuple[float, ...], w: Any) -> Any:
    result = coefficients[0]
    for c in coefficients[1:]:
        result = result * w + c
    return result


def _erfinv(xp: Any, x: Any) -> Any:
    """Inverse error function (relative error about 1e-7): +-inf at +-1, NaN outside [-1, 1]."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = -xp.log((1.0 - x) * (1.0 + x))
        central = _polyval(_ERFINV_CENTRAL, w - 2.5)
        tail = _polyval(_ERFINV_TAIL, xp.sqrt(w) - 3.0)
        result = xp.where(w < 5.0, central, tail) * x
    return xp.where(xp.abs(x) == 1.0, x * np.inf, result)


def _softmax(xp: Any, s: Any) -> Any:
    e = xp.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_zero(xp: Any, s: Any) -> Any:
    """Softmax over the non-zero scores of each row; zero scores stay zero."""
    e = xp.where(s != 0, xp.exp(s - s.max(axis=-1, keepdims=True)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    return e / xp.where(total == 0, 1.0, total)


def _logistic(xp: Any, s: Any) -> Any:
    return xp.exp(-xp.logaddexp(0.0, -s))


def _probit(xp: Any, s: Any) -> Any:
    return _SQRT2 * _erfinv(xp, 2.0 * s - 1.0)


_TRANSFORMS: dict[str, Callable[[Any, Any], Any] | None] = {
    "NONE": None,
    "SOFTMAX": _softmax,
    "LOGISTIC": _logistic,
    "SOFTMAX_ZERO": _softmax_zero,
    "PROBIT": _probit,
}
#: TreeEnsemble (ai.onnx.ml 5) numbers the post-transforms instead of naming them.
POST_TRANSFORM_NAMES = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")


def post_transform(ctx: NodeContext, xp: Any, name: str) -> ScoreTransform:
    """The score transform called ``name``, applied row-wise to (N, K) scores."""
    if name not in _TRANSFORMS:
        raise ctx.error(f"unknown post_transform '{name}'")
    transform = _TRANSFORMS[name]
    if transform is None:
        return lambda s: s
    return lambda s: transform(xp, s)


def class_labels(ctx: NodeContext, int_attr: str) -> np.ndarray:
    """The class labels: int64 from ``int_attr`` or str from ``classlabels_strings``."""
    ints = ctx.attr(int_attr, None)
    strings = ctx.attr("classlabels_strings", None)
    if (ints is None) == (strings is None):
        raise ctx.error(f"exactly one of '{int_attr}' and 'classlabels_strings' must be set")
    if ints is not None:
        return np.asarray(ints, dtype=np.int64)
    return np.asarray(strings, dtype=object)


def _as_rows(xp: Any, x: Any) -> Any:
    """``x`` as a 2-D floating-point batch: 1-D input is one row, integers become float32."""
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _floats(ctx: NodeContext, name: str) -> np.ndarray:
    return np.asarray(ctx.attr(name, []), dtype=np.float64)


def _scores(xp: Any, x: Any, weights_t: Any, bias: Any) -> Any:
    """X @ weights + bias as (N, K) scores laid out class-major (a transposed C array), so that the
    row-wise reductions of the post-transforms run along long contiguous rows, not K-wide ones."""
    scores_t = xp.matmul(weights_t, _as_rows(xp, x).T)
    scores_t += bias[:, None]
    return scores_t.T


def _binary_pair(xp: Any, p: Any) -> Any:
    """The (N, 2) scores [1 - p, p] of a classifier that computes a single score p."""
    return xp.stack([1.0 - p, p], axis=1)


def _single_score(xp: Any, name: str, s: Any) -> Any:
    """The positive-class score of a one-output binary classifier after ``name``."""
    if name == "LOGISTIC":
        return _logistic(xp, s)
    if name == "PROBIT":
        return _probit(xp, s)
    return s


@op("LinearClassifier", 1, domain=ML)
def linear_classifier(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Class scores X @ coefficients.T + intercepts, post-transformed, and the top class."""
    labels = class_labels(ctx, "classlabels_ints")
    coefficients = _floats(ctx, "coefficients")
    intercepts = _floats(ctx, "intercepts")
    n_scores = intercepts.size or labels.size
    if n_scores == 0 or coefficients.size % n_scores:
        raise ctx.error("coefficients do not split into one row per intercept")
    weights_t = coefficients.reshape(n_scores, -1)
    bias = intercepts if intercepts.size else np.zeros(n_scores)
    name = ctx.attr("post_transform", "NONE")
    transform = post_transform(ctx, xp, name)
    binary = n_scores == 1
    if binary and labels.size != 2:
        raise ctx.error("a single row of coefficients needs exactly two class labels")
    if not binary and labels.size < n_scores:
        raise ctx.error(f"{n_scores} classes but only {labels.size} class labels")

    def run(x):
        scores = _scores(xp, x, weights_t, bias)
        if binary:
            s = scores[:, 0]
            return labels[(s > 0).astype(np.int64)], _binary_pair(xp, _single_score(xp, name, s)).astype(np.float32)
        return labels[xp.argmax(scores, axis=1)], xp.ascontiguousarray(transform(scores), dtype=np.float32)

    return run


@op("LinearRegressor", 1, domain=ML)
def linear_regressor(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Targets X @ coefficients.T + intercepts, post-transformed."""
    targets = ctx.attr("targets", 1)
    coefficients = _floats(ctx, "coefficients")
    intercepts = _floats(ctx, "intercepts")
    if targets < 1 or coefficients.size % targets:
        raise ctx.error("coefficients do not split into one row per target")
    if intercepts.size not in (0, targets):
        raise ctx.error("intercepts must have one value per target")
    weights = coefficients.reshape(targets, -1).T
    bias = intercepts if intercepts.size else np.zeros(targets)
    transform = post_transform(ctx, xp, ctx.attr("post_transform", "NONE"))

    def run(x):
        return transform(_as_rows(xp, x) @ weights + bias).astype(np.float32)

    return run


def _kernel(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """The SVM kernel ``k(X, V)``: the (N, M) matrix of kernel values of rows of X and V."""
    kind = ctx.attr("kernel_type", "LINEAR")
    params = list(ctx.attr("kernel_params", [])) + [0.0, 0.0, 0.0]
    gamma, coef0, degree = params[:3]
    if kind == "LINEAR":
        return lambda x, v: x @ v.T
    if kind == "POLY":
        return lambda x, v: (gamma * (x @ v.T) + coef0) ** degree
    if kind == "SIGMOID":
        return lambda x, v: xp.tanh(gamma * (x @ v.T) + coef0)
    if kind == "RBF":

        def rbf(x, v):
            sq = (x * x).sum(axis=1)[:, None] + (v * v).sum(axis=1)[None, :] - 2.0 * (x @ v.T)
            return xp.exp(-gamma * xp.maximum(sq, 0.0))

        return rbf
    raise ctx.error(f"unknown kernel_type '{kind}'")


def _pair_decision_matrix(vectors_per_class: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(n_support, n_pairs) matrix M so that K @ M gives libsvm's one-vs-one decision values.

    Pairs (i, j), i < j, come in lexicographic order. The decision of pair (i, j) weighs the
    support vectors of class i by coefficient row j - 1 and those of class j by row i.
    """
    n_classes = vectors_per_class.size
    owner = np.repeat(np.arange(n_classes), vectors_per_class)
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    matrix = np.zeros((owner.size, len(pairs)))
    for p, (i, j) in enumerate(pairs):
        matrix[owner == i, p] = coefficients[j - 1, owner == i]
        matrix[owner == j, p] = coefficients[i, owner == j]
    return matrix


def _couple(xp: Any, r: Any) -> Any:
    """Class probabilities (N, C) from pairwise ones r[:, i, j] = P(i | i or j).

    r has a zero diagonal. Solves min p'Qp subject to sum(p) = 1 by the fixed-point iteration
    of Wu, Lin and Weng (2004), the one libsvm uses, on every row at once; rows stop updating
    once converged.
    """
    n, k = r.shape[0], r.shape[1]
    rt = r.transpose(0, 2, 1)
    q = -rt * r
    idx = xp.arange(k)
    q[:, idx, idx] = (rt * rt).sum(axis=2)
    p = xp.full((n, k), 1.0 / k)
    eps = 0.005 / k
    for _ in range(max(100, k)):
        qp = xp.einsum("nij,nj->ni", q, p)
        pqp = (p * qp).sum(axis=1)
        active = xp.abs(qp - pqp[:, None]).max(axis=1) >= eps
        if not active.any():
            break
        for t in range(k):
            diff = xp.where(active, (pqp - qp[:, t]) / q[:, t, t], 0.0)
            p[:, t] += diff
            scale = 1.0 + diff
            pqp = (pqp + diff * (diff * q[:, t, t] + 2.0 * qp[:, t])) / (scale * scale)
            qp = (qp + diff[:, None] * q[:, t, :]) / scale[:, None]
            p /= scale[:, None]
    return p


@op("SVMClassifier", 1, domain=ML)
def svm_classifier(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Support-vector classification: one-vs-one votes (libsvm layout) or linear scores per class.

    With prob_a/prob_b the scores are Platt-scaled pairwise probabilities coupled into class
    probabilities; the label always comes from the pairwise votes.
    """
    labels = class_labels(ctx, "classlabels_ints")
    n_classes = labels.size
    kernel = _kernel(ctx, xp)
    coefficients = _floats(ctx, "coefficients")
    rho = _floats(ctx, "rho")
    prob_a, prob_b = _floats(ctx, "prob_a"), _floats(ctx, "prob_b")
    vectors_per_class = np.asarray(ctx.attr("vectors_per_class", []), dtype=np.int64)
    support = _floats(ctx, "support_vectors")
    name = ctx.attr("post_transform", "NONE")
    transform = post_transform(ctx, xp, name)

    if vectors_per_class.sum() == 0:
        if n_classes == 0 or coefficients.size % n_classes or rho.size != n_classes:
            raise ctx.error("linear SVM needs one row of coefficients and one rho per class")
        rows = coefficients.reshape(n_classes, -1)

        def run_linear(x):
            scores = kernel(_as_rows(xp, x), rows) + rho
            return labels[xp.argmax(scores, axis=1)], transform(scores).astype(np.float32)

        return run_linear

    n_support = int(vectors_per_class.sum())
    n_pairs = n_classes * (n_classes - 1) // 2
    if vectors_per_class.size != n_classes or support.size % n_support:
        raise ctx.error("vectors_per_class must give a count per class and match support_vectors")
    if coefficients.size != (n_classes - 1) * n_support or rho.size != n_pairs:
        raise ctx.error("coefficients must be (classes - 1) x supports and rho one per class pair")
    probabilities = prob_a.size > 0
    if probabilities and (prob_a.size != n_pairs or prob_b.size != n_pairs):
        raise ctx.error("prob_a and prob_b need one value per class pair")
    vectors = support.reshape(n_support, -1)
    decisions = _pair_decision_matrix(vectors_per_class, coefficients.reshape(n_classes - 1, n_support))
    first, second = np.triu_indices(n_classes, k=1)
    wins_first = np.eye(n_classes)[first]
    wins_second = np.eye(n_classes)[second]

    def run(x):
        dec = kernel(_as_rows(xp, x).astype(np.float64), vectors) @ decisions + rho
        positive = dec > 0
        votes = positive @ wins_first + (~positive) @ wins_second
        label = labels[xp.argmax(votes, axis=1)]
        if probabilities:
            pairwise = xp.clip(_logistic(xp, -(dec * prob_a + prob_b)), 1e-7, 1 - 1e-7)
            r = xp.zeros((dec.shape[0], n_classes, n_classes))
            r[:, first, second] = pairwise
            r[:, second, first] = 1.0 - pairwise
            return label, _couple(xp, r).astype(np.float32)
        scores = xp.concatenate([-dec, dec], axis=1) if n_classes == 2 else dec
        return label, transform(scores).astype(np.float32)

    return run


@op("SVMRegressor", 1, domain=ML)
def svm_regressor(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Support-vector regression sum_k coef_k * K(x, sv_k) + rho; one-class gives +1/-1."""
    kernel = _kernel(ctx, xp)
    coefficients = _floats(ctx, "coefficients")
    rho = _floats(ctx, "rho")
    n_supports = ctx.attr("n_supports", 0)
    one_class = bool(ctx.attr("one_class", 0))
    transform = post_transform(ctx, xp, ctx.attr("post_transform", "NONE"))
    if rho.size != 1:
        raise ctx.error("rho must hold one value")
    if n_supports > 0:
        support = _floats(ctx, "support_vectors")
        if coefficients.size != n_supports or support.size % n_supports:
            raise ctx.error("coefficients and support_vectors must match n_supports")
        vectors = support.reshape(n_supports, -1)
        weights = coefficients[:, None]
    else:
        vectors = coefficients.reshape(1, -1)
        weights = np.ones((1, 1))

    def run(x):
        score = kernel(_as_rows(xp, x).astype(np.float64), vectors) @ weights + rho[0]
        if one_class:
            return xp.where(score > 0, 1.0, -1.0).astype(np.float32)
        return transform(score).astype(np.float32)

    return run


@op("Normalizer", 1, domain=ML)
def normalizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Each row divided by its max (MAX), sum of absolute values (L1) or Euclidean norm (L2)."""
    norm = ctx.attr("norm", "MAX")
    # row sums as a matrix-vector product: numpy's reductions over a few columns are slow
    divisors = {
        "MAX": lambda x: x.max(axis=1),
        "L1": lambda x: xp.abs(x) @ xp.ones(x.shape[1], dtype=x.dtype),
        "L2": lambda x: xp.sqrt((x * x) @ xp.ones(x.shape[1], dtype=x.dtype)),
    }
    if norm not in divisors:
        raise ctx.error(f"unknown norm '{norm}'")
    divisor_of = divisors[norm]

    def run(x):
        rows = _as_rows(xp, x)
        divisor = divisor_of(rows)
        divisor[divisor == 0] = 1
        y = rows / divisor[:, None]
        return y.reshape(x.shape).astype(np.float32, copy=False)

    return run


@op("Scaler", 1, domain=ML)
def scaler(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """(X - offset) * scale per feature, as float32."""
    offset = np.asarray(ctx.attr("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(ctx.attr("scale", [1.0]), dtype=np.float32)
    if offset.size == 0 or scale.size == 0:
        raise ctx.error("offset and scale must not be empty")

    def run(x):
        y = xp.subtract(x, offset, dtype=np.float32)
        y *= scale
        return y

    return run


@op("Binarizer", 1, domain=ML)
def binarizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """1 where X > threshold, else 0, in X's type."""
    threshold = ctx.attr("threshold", 0.0)

    def run(x):
        return (x > threshold).astype(x.dtype)

    return run


@op("Imputer", 1, domain=ML)
def imputer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """X with every element equal to the replaced value (NaN matches NaN) set to the imputed one."""
    floats = ctx.attr("imputed_value_floats", None)
    ints = ctx.attr("imputed_value_int64s", None)
    if (floats is None) == (ints is None):
        raise ctx.error("exactly one of imputed_value_floats and imputed_value_int64s must be set")
    if floats is not None:
        imputed = np.asarray(floats, dtype=np.float64)
        replaced = ctx.attr("replaced_value_float", 0.0)
    else:
        imputed = np.asarray(ints, dtype=np.int64)
        replaced = ctx.attr("replaced_value_int64", 0)
    if imputed.size == 0:
        raise ctx.error("the imputed values must not be empty")
    match_nan = floats is not None and np.isnan(replaced)

    def run(x):
        hit = xp.isnan(x) if match_nan else x == replaced
        return xp.where(hit, imputed.astype(x.dtype), x)

    return run
