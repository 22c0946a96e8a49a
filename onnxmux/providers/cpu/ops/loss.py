"""Classification losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.providers.cpu.registry import op

_REDUCTIONS = ("none", "sum", "mean")


def _loss_options(ctx: Any) -> tuple[str, int | None]:
    reduction = ctx.attr("reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise ctx.error(f"unsupported reduction '{reduction}'")
    return reduction, ctx.attr("ignore_index", None)


def _accumulator(dtype: np.dtype) -> np.dtype:
    """Half-precision losses are accumulated in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _nll(xp: Any, log_prob: Any, target: Any, weight: Any, reduction: str, ignore_index: int | None) -> Any:
    """Weighted negative log-likelihood of ``target`` classes under ``log_prob`` (N, C, d1...), as float32/64."""
    acc = _accumulator(log_prob.dtype)
    kept = xp.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    classes = xp.where(kept, target, 0).astype(np.int64)
    picked = xp.take_along_axis(log_prob, xp.expand_dims(classes, 1), axis=1)[:, 0].astype(acc)
    sample_weight = kept.astype(acc)
    if weight is not None:
        sample_weight = sample_weight * xp.take(weight.astype(acc), classes)
    loss = -picked * sample_weight
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.sum() / sample_weight.sum()
    return xp.asarray(loss)


@op("NegativeLogLikelihoodLoss", 12, 13, 22)
def negative_log_likelihood_loss(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Negative log-likelihood of the target classes, optionally weighted, ignoring ignore_index, reduced."""
    reduction, ignore_index = _loss_options(ctx)

    def run(log_prob, target, weight=None):
        return _nll(xp, log_prob, target, weight, reduction, ignore_index).astype(log_prob.dtype)

    return run


@op("SoftmaxCrossEntropyLoss", 12, 13)
def softmax_cross_entropy_loss(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Cross entropy of softmax(scores) over axis 1 against labels; also returns the log-probabilities."""
    reduction, ignore_index = _loss_options(ctx)

    def run(scores, labels, weights=None):
        acc = _accumulator(scores.dtype)
        shifted = scores.astype(acc) - scores.max(axis=1, keepdims=True).astype(acc)
        log_prob = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        loss = _nll(xp, log_prob, labels, weights, reduction, ignore_index)
        return loss.astype(scores.dtype), log_prob.astype(scores.dtype)

    return run
