"""Optimizer steps of ai.onnx.preview.training: Adagrad, Adam and Momentum.

Each takes a learning rate R, an update count T, then the optimized tensors and their
per-tensor state as consecutive groups (all X, then all G, then ...), and returns the new
tensors followed by the new state in the same grouped layout.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op

TRAINING = "ai.onnx.preview.training"


def _groups(ctx: NodeContext, n_groups: int) -> int:
    """The number of optimized tensors, given the groups of inputs each one has."""
    n_tensors = (ctx.num_inputs - 2) // n_groups
    if n_tensors < 1 or ctx.num_inputs - 2 != n_tensors * n_groups:
        raise ctx.error(f"expected R, T and {n_groups} equal groups of tensors")
    return n_tensors


def _multi_tensor(n_tensors: int, n_groups: int, step: Callable[..., tuple]) -> Callable[..., tuple]:
    """``run(r, t, *grouped)`` applying ``step(r, t, x, g, ...)`` to every tensor's group."""

    def run(r, t, *grouped):
        results = [
            tuple(out.astype(group[0].dtype) for out in step(r, t, *group))
            for group in zip(*(grouped[i * n_tensors : (i + 1) * n_tensors] for i in range(n_groups)))
        ]
        return tuple(value for position in zip(*results) for value in position)

    return run


@op("Adagrad", 1, domain=TRAINING)
def adagrad(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """One ADAGRAD step per tensor: new X and new accumulated squared gradient H."""
    n_tensors = _groups(ctx, 3)
    norm = ctx.attr("norm_coefficient", 0.0)
    decay = ctx.attr("decay_factor", 0.0)
    epsilon = ctx.attr("epsilon", 1e-6)

    def step(r: Any, t: Any, x: Any, g: Any, h: Any) -> tuple:
        rate = r / (1 + t * decay)
        g_reg = norm * x + g
        h_new = h + g_reg * g_reg
        return x - rate * g_reg / (xp.sqrt(h_new) + epsilon), h_new

    return _multi_tensor(n_tensors, 3, step)


@op("Adam", 1, domain=TRAINING)
def adam(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """One Adam step per tensor: new X, new first moment V and new second moment H."""
    n_tensors = _groups(ctx, 4)
    norm = ctx.attr("norm_coefficient", 0.0)
    norm_post = ctx.attr("norm_coefficient_post", 0.0)
    alpha = ctx.attr("alpha", 0.9)
    beta = ctx.attr("beta", 0.999)
    epsilon = ctx.attr("epsilon", 1e-6)

    def step(r: Any, t: Any, x: Any, g: Any, v: Any, h: Any) -> tuple:
        g_reg = norm * x + g
        v_new = alpha * v + (1 - alpha) * g_reg
        h_new = beta * h + (1 - beta) * (g_reg * g_reg)
        count = int(t)
        rate = r * np.sqrt(1 - beta**count) / (1 - alpha**count) if count > 0 else r
        x_new = x - rate * (v_new / (xp.sqrt(h_new) + epsilon))
        return (1 - norm_post) * x_new, v_new, h_new

    return _multi_tensor(n_tensors, 4, step)


@op("Momentum", 1, domain=TRAINING)
def momentum(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """One SGD step with standard or Nesterov momentum per tensor: new X and new momentum V."""
    n_tensors = _groups(ctx, 3)
    norm = ctx.attr("norm_coefficient")
    alpha = ctx.attr("alpha")
    beta = ctx.attr("beta")
    mode = ctx.attr("mode")
    if mode not in ("standard", "nesterov"):
        raise ctx.error(f"mode must be 'standard' or 'nesterov', not '{mode}'")
    nesterov = mode == "nesterov"

    def step(r: Any, t: Any, x: Any, g: Any, v: Any) -> tuple:
        g_reg = norm * x + g
        v_new = alpha * v + (beta if int(t) > 0 else 1.0) * g_reg
        direction = g_reg + alpha * v_new if nesterov else v_new
        return x - r * direction, v_new

    return _multi_tensor(n_tensors, 3, step)
