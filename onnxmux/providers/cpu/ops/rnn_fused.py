"""Fused recurrent steps for RNN, GRU and LSTM with their default activations and no clip.

A step of batch-1 inference is a matrix-vector product followed by a few element-wise passes
over vectors of a few hundred values, so its cost is mostly per-call overhead. Here the weights
are packed once (per session when they are initializers): the input weights of every direction
side by side for one input-projection GEMM, each recurrence matrix transposed and contiguous,
and the sigmoid gates' rows halved, so that one in-place ``tanh`` over the gate buffer computes
every gate (sigmoid(x) = (tanh(x/2) + 1) / 2; halving is exact in binary floating point). Each
step then writes into buffers allocated once per run and shared by the directions: the gate
buffer, the cell state, and the output Y, whose step slices are the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Packed:
    """A layer's weights laid out for the fused steps."""

    #: Input weights of every direction, [input_size, num_directions * gates * hidden].
    w: Any
    #: The bias added to the input projection (input bias plus the folded recurrence bias).
    bias: Any
    #: Each direction's recurrence weights, transposed: [hidden, gates * hidden].
    r: tuple[Any, ...]
    #: Each direction's recurrence bias of the gates whose bias cannot be folded (GRU's hidden gate).
    r_bias: tuple[Any, ...]


def pack(xp: Any, W: Any, R: Any, B: Any, halved: int, folded: int) -> Packed:
    """Pack W, R and B; the first ``halved`` gates are sigmoid gates, the recurrence bias of the
    first ``folded`` gates joins the input bias (the others stay in ``r_bias``)."""
    directions, rows, size = W.shape
    hidden = R.shape[-1]
    scale = xp.ones(rows, dtype=W.dtype)
    scale[: halved * hidden] = 0.5
    w = W * scale[:, None]
    packed_w = xp.ascontiguousarray(w.transpose(2, 0, 1).reshape(size, directions * rows))
    r = tuple(xp.ascontiguousarray((R[d] * scale[:, None]).T) for d in range(directions))
    if B is None:
        bias = xp.zeros(directions * rows, dtype=W.dtype)
        r_bias = tuple(xp.zeros(rows - folded * hidden, dtype=W.dtype) for _ in range(directions))
    else:
        recurrence = B[:, rows:].copy()
        r_bias = tuple(recurrence[d, folded * hidden :] * scale[folded * hidden :] for d in range(directions))
        recurrence[:, folded * hidden :] = 0
        bias = ((B[:, :rows] + recurrence) * scale).reshape(-1)
    return Packed(packed_w, bias, r, r_bias)


def packer(constants: Sequence[Any], halved: int, folded: int) -> Callable[[Any, Any, Any, Any], Packed]:
    """``pack`` for a node: weights that are the node's initializers are packed once and kept.

    ``constants`` are the node's W, R and B as known at session creation (None when computed);
    a run whose W, R and B are those very arrays reuses the packing.
    """
    kept: list[Packed] = []
    fixed = constants[0] is not None and constants[1] is not None

    def packed(xp: Any, W: Any, R: Any, B: Any) -> Packed:
        if fixed and W is constants[0] and R is constants[1] and B is constants[2]:
            if not kept:
                kept.append(pack(xp, W, R, B, halved, folded))
            return kept[0]
        return pack(xp, W, R, B, halved, folded)

    return packed


def project(xp: Any, x: Any, packed: Packed) -> Any:
    """Every direction's input projection plus bias, [seq, batch, num_directions * gates * hidden]."""
    steps, batch, size = x.shape
    y = xp.matmul(xp.ascontiguousarray(x).reshape(steps * batch, size), packed.w)
    y += packed.bias
    return y.reshape(steps, batch, packed.w.shape[1])


def _order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _finals(xp: Any, y: Any, h0: Any, reverse: Sequence[bool]) -> Any:
    """Y_h: each direction's last hidden state (the initial one for an empty sequence)."""
    if y.shape[0] == 0:
        return xp.array(h0, copy=True)
    return xp.stack([y[0 if back else -1, d] for d, back in enumerate(reverse)])


def lstm(xp: Any, x: Any, packed: Packed, h0: Any, c0: Any, reverse: Sequence[bool]) -> tuple[Any, Any, Any]:
    """Y [seq, directions, batch, hidden], Y_h and Y_c of a default LSTM (gates i, o, f, c)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    rows = 4 * hidden
    dtype = h0.dtype
    projected = project(xp, x, packed)
    y = xp.empty((steps, len(reverse), batch, hidden), dtype=dtype)
    c = xp.array(c0, dtype=dtype, order="C", copy=True)
    gates = xp.empty((batch, rows), dtype=dtype)
    sigmoid = gates[:, : 3 * hidden]
    i, o, f, candidate = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
    half = xp.asarray(0.5, dtype=dtype)
    matmul, tanh = xp.matmul, xp.tanh
    for d, back in enumerate(reverse):
        r, cell, h = packed.r[d], c[d], h0[d]
        inputs = projected[:, :, d * rows : (d + 1) * rows]
        for t in _order(steps, back):
            matmul(h, r, out=gates)
            gates += inputs[t]
            tanh(gates, out=gates)
            sigmoid *= half
            sigmoid += half
            candidate *= i
            cell *= f
            cell += candidate
            h = y[t, d]
            tanh(cell, out=h)
            h *= o
    return y, _finals(xp, y, h0, reverse), c


def gru(xp: Any, x: Any, packed: Packed, h0: Any, reverse: Sequence[bool], linear_before_reset: bool) -> tuple[Any, Any]:
    """Y [seq, directions, batch, hidden] and Y_h of a default GRU (gates z, r, h)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    rows = 3 * hidden
    dtype = h0.dtype
    projected = project(xp, x, packed)
    y = xp.empty((steps, len(reverse), batch, hidden), dtype=dtype)
    gates = xp.empty((batch, rows), dtype=dtype)
    update_reset = gates[:, : 2 * hidden]
    z, reset, candidate = (gates[:, k * hidden : (k + 1) * hidden] for k in range(3))
    gated = xp.empty((batch, hidden), dtype=dtype)
    half = xp.asarray(0.5, dtype=dtype)
    matmul, tanh, subtract = xp.matmul, xp.tanh, xp.subtract
    for d, back in enumerate(reverse):
        r, r_bias, h = packed.r[d], packed.r_bias[d], h0[d]
        r_gates, r_hidden = r[:, : 2 * hidden], r[:, 2 * hidden :]
        inputs = projected[:, :, d * rows : (d + 1) * rows]
        for t in _order(steps, back):
            step_inputs = inputs[t]
            if linear_before_reset:
                matmul(h, r, out=gates)
                candidate += r_bias
            else:
                matmul(h, r_gates, out=update_reset)
            update_reset += step_inputs[:, : 2 * hidden]
            tanh(update_reset, out=update_reset)
            update_reset *= half
            update_reset += half
            if linear_before_reset:
                candidate *= reset
            else:
                xp.multiply(reset, h, out=gated)
                matmul(gated, r_hidden, out=candidate)
                candidate += r_bias
            candidate += step_inputs[:, 2 * hidden :]
            tanh(candidate, out=candidate)
            out = y[t, d]
            subtract(h, candidate, out=out)
            out *= z
            out += candidate
            h = out
    return y, _finals(xp, y, h0, reverse)


def rnn(xp: Any, x: Any, packed: Packed, h0: Any, reverse: Sequence[bool]) -> tuple[Any, Any]:
    """Y [seq, directions, batch, hidden] and Y_h of a tanh RNN."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    projected = project(xp, x, packed)
    y = xp.empty((steps, len(reverse), batch, hidden), dtype=h0.dtype)
    matmul, tanh = xp.matmul, xp.tanh
    for d, back in enumerate(reverse):
        r, h = packed.r[d], h0[d]
        inputs = projected[:, :, d * hidden : (d + 1) * hidden]
        for t in _order(steps, back):
            out = y[t, d]
            matmul(h, r, out=out)
            out += inputs[t]
            tanh(out, out=out)
            h = out
    return y, _finals(xp, y, h0, reverse)
