"""Recurrent layers: RNN, GRU and LSTM (forward, reverse, bidirectional; both layouts).

The input projection of every time step is one 2-D GEMM up front; the recurrence then steps
through time, with ``sequence_lens`` freezing the state of finished batch entries and zeroing
their outputs. Layers with the default activations, no clip and full-length sequences take the
fused steps of ``rnn_fused`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxmux.providers.cpu.ops import rnn_fused
from onnxmux.providers.cpu.registry import op

Kernel = Callable[..., Any]
Activation = Callable[[Any], Any]

#: name -> (builder(xp, alpha, beta), default alpha, default beta); None where a parameter is unused.
_ACTIVATIONS: dict[str, tuple[Callable[..., Activation], float | None, float | None]] = {
    "relu": (lambda xp, a, b: lambda x: xp.maximum(x, 0), None, None),
    "tanh": (lambda xp, a, b: xp.tanh, None, None),
    "sigmoid": (lambda xp, a, b: lambda x: 0.5 * (xp.tanh(0.5 * x) + 1), None, None),
    "affine": (lambda xp, a, b: lambda x: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda xp, a, b: lambda x: xp.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda xp, a, b: lambda x: xp.where(x >= a, x, xp.zeros_like(x)), 1.0, None),
    "scaledtanh": (lambda xp, a, b: lambda x: a * xp.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda xp, a, b: lambda x: xp.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda xp, a, b: lambda x: xp.where(x >= 0, x, a * xp.expm1(x)), 1.0, None),
    "softsign": (lambda xp, a, b: lambda x: x / (1 + xp.abs(x)), None, None),
    "softplus": (lambda xp, a, b: lambda x: xp.logaddexp(x, 0), None, None),
}
_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


@dataclass(frozen=True)
class _Layer:
    """Attributes shared by RNN, GRU and LSTM, parsed once per node."""

    reverse: tuple[bool, ...]
    activations: tuple[tuple[Activation, ...], ...]
    clip: float | None
    batch_major: bool
    #: The default activations with no clip: the kernels may take their fused step.
    standard: bool

    def clipped(self, xp: Any, x: Any) -> Any:
        """The input of an activation, bounded by the ``clip`` threshold when there is one."""
        return x if self.clip is None else xp.clip(x, -self.clip, self.clip)

    def sequence_major(self, x: Any) -> Any:
        """X as [seq_length, batch_size, input_size]."""
        return x.transpose(1, 0, 2) if self.batch_major else x

    def initial(self, xp: Any, state: Any, batch: int, hidden: int, dtype: np.dtype) -> Any:
        """An initial state as [num_directions, batch_size, hidden_size] (zeros when absent)."""
        if state is None:
            return xp.zeros((len(self.reverse), batch, hidden), dtype=dtype)
        return state.transpose(1, 0, 2) if self.batch_major else state

    def fused(self, xp: Any, sequence_lens: Any, steps: int) -> bool:
        """Whether the fused steps apply: default activations, no clip, no sequence cut short."""
        return self.standard and (sequence_lens is None or bool(xp.all(sequence_lens >= steps)))

    def outputs(self, y: Any, *states: Any) -> tuple[Any, ...]:
        """Y [seq, directions, batch, hidden] and each final state (Y_h, Y_c), in the node's layout."""
        if self.batch_major:
            return (y.transpose(2, 0, 1, 3),) + tuple(s.transpose(1, 0, 2) for s in states)
        return (y,) + tuple(states)


def _parse_layer(ctx: Any, xp: Any, default_activations: list[str]) -> _Layer:
    """Direction, activations (with alpha/beta), clip and layout, validated."""
    direction = ctx.attr("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ctx.error(f"unknown direction '{direction}'")
    reverse = _DIRECTIONS[direction]
    layout = ctx.attr("layout", 0)
    if layout not in (0, 1):
        raise ctx.error(f"layout must be 0 or 1, got {layout}")
    names = ctx.attr("activations", default_activations * len(reverse))
    per_direction = len(default_activations)
    if len(names) != per_direction * len(reverse):
        raise ctx.error(f"expected {per_direction * len(reverse)} activations, got {len(names)}")
    alphas = list(ctx.attr("activation_alpha", []))
    betas = list(ctx.attr("activation_beta", []))
    functions = []
    for name in names:
        if name.lower() not in _ACTIVATIONS:
            raise ctx.error(f"unsupported activation '{name}'")
        build, alpha, beta = _ACTIVATIONS[name.lower()]
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        functions.append(build(xp, alpha, beta))
    grouped = tuple(
        tuple(functions[i : i + per_direction]) for i in range(0, len(functions), per_direction)
    )
    hidden_size = ctx.attr("hidden_size", None)
    if hidden_size is not None and hidden_size <= 0:
        raise ctx.error(f"hidden_size must be positive, got {hidden_size}")
    clip = ctx.attr("clip", None)
    if clip is not None and clip <= 0:
        raise ctx.error(f"clip must be positive, got {clip}")
    standard = (
        [n.lower() for n in names] == [n.lower() for n in default_activations] * len(reverse)
        and not ctx.attr("activation_alpha", [])
        and not ctx.attr("activation_beta", [])
        and clip is None
    )
    return _Layer(reverse, grouped, clip, layout == 1, standard)


def _scan(
    xp: Any,
    step: Callable[[Any, tuple[Any, ...]], tuple[Any, ...]],
    projected: Any,
    state: tuple[Any, ...],
    lengths: Any,
    reverse: bool,
) -> tuple[Any, tuple[Any, ...]]:
    """Runs ``step`` over time; returns every hidden output [seq, batch, hidden] and the last state.

    Batch entries past their sequence length keep their state and output zeros.
    """
    steps = projected.shape[0]
    outputs: list[Any] = [None] * steps
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        new_state = step(projected[t], state)
        if lengths is not None:
            active = (lengths > t)[:, None]
            new_state = tuple(xp.where(active, new, old) for new, old in zip(new_state, state))
            outputs[t] = xp.where(active, new_state[0], xp.zeros_like(new_state[0]))
        else:
            outputs[t] = new_state[0]
        state = new_state
    return xp.stack(outputs), state


def _project(xp: Any, x: Any, w: Any, bias: Any) -> Any:
    """X [seq, batch, input] times Wᵀ plus bias for every time step at once: one 2-D GEMM."""
    steps, batch, size = x.shape
    y = xp.ascontiguousarray(x).reshape(steps * batch, size) @ w.T
    y += bias
    return y.reshape(steps, batch, -1)


def _split_bias(xp: Any, bias: Any, direction: int, size: int, dtype: np.dtype) -> tuple[Any, Any]:
    """The (input, recurrence) bias vectors of one direction; zeros when B is absent."""
    if bias is None:
        zeros = xp.zeros(size, dtype=dtype)
        return zeros, zeros
    return bias[direction, :size], bias[direction, size:]


def _run_layer(
    xp: Any,
    layer: _Layer,
    sequence_lens: Any,
    initial: list[Any],
    make_step: Callable[[int, tuple[Activation, ...]], tuple[Any, Callable]],
) -> tuple[Any, ...]:
    """Drives every direction: ``make_step(d, activations)`` gives (projected inputs, step)."""
    ys, finals = [], []
    for d, reverse in enumerate(layer.reverse):
        projected, step = make_step(d, layer.activations[d])
        y, final = _scan(xp, step, projected, tuple(s[d] for s in initial), sequence_lens, reverse)
        ys.append(y)
        finals.append(final)
    return layer.outputs(xp.stack(ys, axis=1), *(xp.stack(per_state) for per_state in zip(*finals)))


@op("RNN", 1, 7, 14, 22)
def rnn(ctx: Any, xp: Any) -> Kernel:
    """Simple recurrent layer: Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""
    layer = _parse_layer(ctx, xp, ["Tanh"])
    packed = rnn_fused.packer([ctx.constant(i) for i in (1, 2, 3)], rnn_fused.RNN)

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        x = layer.sequence_major(X)
        hidden = R.shape[-1]
        h0 = layer.initial(xp, initial_h, x.shape[1], hidden, X.dtype)
        if layer.fused(xp, sequence_lens, x.shape[0]):
            return layer.outputs(*rnn_fused.rnn(xp, x, packed(xp, W, R, B), h0, layer.reverse))

        def make_step(d, activations):
            (f,) = activations
            wb, rb = _split_bias(xp, B, d, hidden, X.dtype)
            recurrence = R[d].T

            def step(projected, state):
                return (f(layer.clipped(xp, projected + state[0] @ recurrence)),)

            return _project(xp, x, W[d], wb + rb), step

        return _run_layer(xp, layer, sequence_lens, [h0], make_step)

    return run


@op("GRU", 1, 3, 7, 14, 22)
def gru(ctx: Any, xp: Any) -> Kernel:
    """Gated recurrent unit layer (update, reset, hidden gates; optional linear_before_reset)."""
    layer = _parse_layer(ctx, xp, ["Sigmoid", "Tanh"])
    linear_before_reset = bool(ctx.attr("linear_before_reset", 0))
    layout = rnn_fused.GRU if linear_before_reset else rnn_fused.GRU_RESET_FIRST
    packed = rnn_fused.packer([ctx.constant(i) for i in (1, 2, 3)], layout)

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        x = layer.sequence_major(X)
        hidden = R.shape[-1]
        h0 = layer.initial(xp, initial_h, x.shape[1], hidden, X.dtype)
        if layer.fused(xp, sequence_lens, x.shape[0]):
            weights = packed(xp, W, R, B)
            return layer.outputs(*rnn_fused.gru(xp, x, weights, h0, layer.reverse, linear_before_reset))

        def make_step(d, activations):
            f, g = activations
            wb, rb = _split_bias(xp, B, d, 3 * hidden, X.dtype)
            gates_r, gates_rb = R[d, : 2 * hidden].T, rb[: 2 * hidden]
            hidden_r, hidden_rb = R[d, 2 * hidden :].T, rb[2 * hidden :]

            def step(projected, state):
                (h,) = state
                xz, xr, xh = (projected[:, j * hidden : (j + 1) * hidden] for j in range(3))
                hz_hr = h @ gates_r + gates_rb
                z = f(layer.clipped(xp, xz + hz_hr[:, :hidden]))
                r = f(layer.clipped(xp, xr + hz_hr[:, hidden:]))
                if linear_before_reset:
                    candidate = xh + r * (h @ hidden_r + hidden_rb)
                else:
                    candidate = xh + (r * h) @ hidden_r + hidden_rb
                return ((1 - z) * g(layer.clipped(xp, candidate)) + z * h,)

            return _project(xp, x, W[d], wb), step

        return _run_layer(xp, layer, sequence_lens, [h0], make_step)

    return run


@op("LSTM", 1, 7, 14, 22)
def lstm(ctx: Any, xp: Any) -> Kernel:
    """Long short-term memory layer with optional peepholes and coupled input/forget gates."""
    layer = _parse_layer(ctx, xp, ["Sigmoid", "Tanh", "Tanh"])
    input_forget = bool(ctx.attr("input_forget", 0))
    packed = rnn_fused.packer([ctx.constant(i) for i in (1, 2, 3)], rnn_fused.LSTM)

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        x = layer.sequence_major(X)
        hidden = R.shape[-1]
        h0 = layer.initial(xp, initial_h, x.shape[1], hidden, X.dtype)
        c0 = layer.initial(xp, initial_c, x.shape[1], hidden, X.dtype)
        if P is None and not input_forget and layer.fused(xp, sequence_lens, x.shape[0]):
            return layer.outputs(*rnn_fused.lstm(xp, x, packed(xp, W, R, B), h0, c0, layer.reverse))

        def make_step(d, activations):
            f, g, h_act = activations
            wb, rb = _split_bias(xp, B, d, 4 * hidden, X.dtype)
            peep_i, peep_o, peep_f = (
                (0, 0, 0) if P is None else (P[d, :hidden], P[d, hidden : 2 * hidden], P[d, 2 * hidden :])
            )
            recurrence = R[d].T

            def step(projected, state):
                h, c = state
                gates = projected + h @ recurrence
                gi, go, gf, gc = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
                i = f(layer.clipped(xp, gi + peep_i * c))
                forget = 1 - i if input_forget else f(layer.clipped(xp, gf + peep_f * c))
                c_new = forget * c + i * g(layer.clipped(xp, gc))
                o = f(layer.clipped(xp, go + peep_o * c_new))
                return o * h_act(layer.clipped(xp, c_new)), c_new

            return _project(xp, x, W[d], wb + rb), step

        return _run_layer(xp, layer, sequence_lens, [h0, c0], make_step)

    return run
