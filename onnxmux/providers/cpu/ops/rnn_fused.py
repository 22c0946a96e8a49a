"""Fused recurrent steps for RNN, GRU and LSTM with their default activations and no clip.

A step of batch-1 inference is a matrix-vector product followed by a few element-wise passes
over vectors of a few hundred values, so its cost is mostly per-call overhead. Here the weights
are packed once (per session when they are initializers): the input weights of every direction
side by side for one input-projection GEMM, each recurrence matrix transposed and contiguous,
the gates reordered where that lets one call cover several, and the sigmoid gates' rows halved,
so that one in-place ``tanh`` over the gate buffer computes every gate (sigmoid(x) =
(tanh(x/2) + 1) / 2; halving is exact in binary floating point). Each step then writes into
buffers allocated once per run and shared by the directions: the gate buffer (which for LSTM
also holds the cell state, next to the candidate), and the output Y, whose step slices are the
hidden states.
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
    #: Each direction's recurrence weights, transposed: [hidden, gates * hidden], contiguous and
    #: 64-byte aligned (with ``split``, a pair of column blocks).
    r: tuple[Any, ...]
    #: Each direction's recurrence bias of the gates whose bias cannot be folded (GRU's hidden gate).
    r_bias: tuple[Any, ...]


@dataclass(frozen=True)
class Layout:
    """How a layer's gates are packed: ``order`` lists the ONNX gate numbers in packed order, the
    first ``halved`` packed gates are sigmoid gates, the recurrence bias of the first ``folded``
    joins the input bias, and ``split`` (when set) cuts each recurrence matrix after that many."""

    order: tuple[int, ...]
    halved: int
    folded: int
    split: int | None = None


#: LSTM's gates packed as i, f, o, c: i and f next to each other, so one call multiplies both.
LSTM = Layout((0, 2, 1, 3), halved=3, folded=4)
GRU = Layout((0, 1, 2), halved=2, folded=2)
GRU_RESET_FIRST = Layout((0, 1, 2), halved=2, folded=2, split=2)
RNN = Layout((0,), halved=0, folded=1)


def _gates(a: Any, order: tuple[int, ...], hidden: int) -> Any:
    """``a`` [directions, gates * hidden, ...] with its gate blocks in ``order``."""
    shape = a.shape
    return a.reshape(shape[0], len(order), hidden, *shape[2:])[:, list(order)].reshape(shape)


def _aligned(xp: Any, a: Any) -> Any:
    """A C-contiguous copy of host array ``a`` starting on a 64-byte boundary: OpenBLAS's
    matrix-vector product runs a third slower on a matrix that is only 16-byte aligned.
    Device arrays (no ``ctypes``) come back as the allocator aligns them."""
    if not hasattr(a, "ctypes"):
        return xp.ascontiguousarray(a)
    buffer = xp.empty(a.nbytes + 64, dtype=xp.uint8)
    start = -buffer.ctypes.data % 64
    out = buffer[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def pack(xp: Any, W: Any, R: Any, B: Any, layout: Layout) -> Packed:
    """Pack W, R and B as ``layout`` says."""
    directions, rows, size = W.shape
    hidden = R.shape[-1]
    halved, folded = layout.halved, layout.folded
    scale = xp.ones(rows, dtype=W.dtype)
    scale[: halved * hidden] = 0.5
    w = _gates(W, layout.order, hidden) * scale[:, None]
    packed_w = xp.ascontiguousarray(w.transpose(2, 0, 1).reshape(size, directions * rows))
    r_t = [(r * scale[:, None]).T for r in _gates(R, layout.order, hidden)]
    if layout.split is None:
        r = tuple(_aligned(xp, m) for m in r_t)
    else:
        cut = layout.split * hidden
        r = tuple((_aligned(xp, m[:, :cut]), _aligned(xp, m[:, cut:])) for m in r_t)
    if B is None:
        bias = xp.zeros(directions * rows, dtype=W.dtype)
        r_bias = tuple(xp.zeros(rows - folded * hidden, dtype=W.dtype) for _ in range(directions))
    else:
        recurrence = _gates(B[:, rows:], layout.order, hidden)  # a copy: gates are picked by a list
        r_bias = tuple(recurrence[d, folded * hidden :] * scale[folded * hidden :] for d in range(directions))
        recurrence[:, folded * hidden :] = 0
        bias = ((_gates(B[:, :rows], layout.order, hidden) + recurrence) * scale).reshape(-1)
    return Packed(packed_w, bias, r, r_bias)


def packer(constants: Sequence[Any], layout: Layout) -> Callable[[Any, Any, Any, Any], Packed]:
    """``pack`` for a node: weights that are the node's initializers are packed once and kept.

    ``constants`` are the node's W, R and B as known at session creation (None when computed);
    a run whose W, R and B are those very arrays reuses the packing.
    """
    kept: list[Packed] = []
    fixed = constants[0] is not None and constants[1] is not None

    def packed(xp: Any, W: Any, R: Any, B: Any) -> Packed:
        if fixed and W is constants[0] and R is constants[1] and B is constants[2]:
            if not kept:
                kept.append(pack(xp, W, R, B, layout))
            return kept[0]
        return pack(xp, W, R, B, layout)

    return packed


def project(xp: Any, x: Any, packed: Packed) -> Any:
    """Every direction's input projection plus bias, [seq, batch, num_directions * gates * hidden]."""
    steps, batch, size = x.shape
    y = xp.matmul(xp.ascontiguousarray(x).reshape(steps * batch, size), packed.w)
    y += packed.bias
    return y.reshape(steps, batch, packed.w.shape[1])


def _product(xp: Any, out: Any) -> Callable[..., Any]:
    """The matrix product writing into ``out``: ``dot`` (less overhead) where ``out`` is contiguous."""
    return xp.dot if out.flags.c_contiguous else xp.matmul


@dataclass
class _Run:
    """What every fused layer allocates once per run: the projected inputs, Y, and a gate buffer."""

    projected: Any
    y: Any
    gates: Any
    half: Any

    @classmethod
    def start(cls, xp: Any, x: Any, packed: Packed, h0: Any, width: int) -> _Run:
        steps, batch, _ = x.shape
        dtype = h0.dtype
        y = xp.empty((steps, h0.shape[0], batch, h0.shape[-1]), dtype=dtype)
        return cls(project(xp, x, packed), y, xp.empty((batch, width), dtype=dtype), xp.asarray(0.5, dtype=dtype))

    def steps(self, d: int, rows: int, reverse: bool) -> list[tuple[Any, Any]]:
        """Direction ``d``'s (projected input, hidden output) per time step, in the order they run."""
        pairs = list(zip(self.projected[:, :, d * rows : (d + 1) * rows], self.y[:, d]))
        return pairs[::-1] if reverse else pairs

    def finals(self, xp: Any, h0: Any, reverse: Sequence[bool]) -> Any:
        """Y_h: each direction's last hidden state (the initial one for an empty sequence)."""
        y = self.y
        if y.shape[0] == 0:
            return xp.array(h0, copy=True)
        return xp.stack([y[0 if back else -1, d] for d, back in enumerate(reverse)])


def lstm(xp: Any, x: Any, packed: Packed, h0: Any, c0: Any, reverse: Sequence[bool]) -> tuple[Any, Any, Any]:
    """Y [seq, directions, batch, hidden], Y_h and Y_c of a default LSTM (packed gates i, f, o, c).

    The gate buffer holds i, f, o, c and then the cell state, so that [c, cell] *= [i, f] is one call.
    """
    hidden = h0.shape[-1]
    rows = 4 * hidden
    run = _Run.start(xp, x, packed, h0, 5 * hidden)
    buffer, half = run.gates, run.half
    gates, sigmoid, input_forget = buffer[:, :rows], buffer[:, : 3 * hidden], buffer[:, : 2 * hidden]
    o, candidate, cell = (buffer[:, k * hidden : (k + 1) * hidden] for k in (2, 3, 4))
    candidate_cell = buffer[:, 3 * hidden :]
    c = xp.empty_like(c0)
    product, tanh, add = _product(xp, gates), xp.tanh, xp.add
    for d, back in enumerate(reverse):
        r, h = packed.r[d], h0[d]
        cell[...] = c0[d]
        for step_inputs, out in run.steps(d, rows, back):
            product(h, r, out=gates)
            gates += step_inputs
            tanh(gates, out=gates)
            sigmoid *= half
            sigmoid += half
            candidate_cell *= input_forget
            add(candidate, cell, out=cell)
            h = out
            tanh(cell, out=h)
            h *= o
        c[d] = cell
    return run.y, run.finals(xp, h0, reverse), c


def gru(xp: Any, x: Any, packed: Packed, h0: Any, reverse: Sequence[bool], linear_before_reset: bool) -> tuple[Any, Any]:
    """Y [seq, directions, batch, hidden] and Y_h of a default GRU (gates z, r, h)."""
    hidden = h0.shape[-1]
    rows = 3 * hidden
    run = _Run.start(xp, x, packed, h0, rows)
    gates, half = run.gates, run.half
    update_reset = gates[:, : 2 * hidden]
    z, reset, candidate = (gates[:, k * hidden : (k + 1) * hidden] for k in range(3))
    gated = xp.empty_like(candidate)
    tanh, subtract = xp.tanh, xp.subtract
    product = _product(xp, gates if linear_before_reset else update_reset)
    candidate_product = _product(xp, candidate)
    for d, back in enumerate(reverse):
        r, r_bias, h = packed.r[d], packed.r_bias[d], h0[d]
        for step_inputs, out in run.steps(d, rows, back):
            if linear_before_reset:
                product(h, r, out=gates)
                candidate += r_bias
            else:
                product(h, r[0], out=update_reset)
            update_reset += step_inputs[:, : 2 * hidden]
            tanh(update_reset, out=update_reset)
            update_reset *= half
            update_reset += half
            if linear_before_reset:
                candidate *= reset
            else:
                xp.multiply(reset, h, out=gated)
                candidate_product(gated, r[1], out=candidate)
                candidate += r_bias
            candidate += step_inputs[:, 2 * hidden :]
            tanh(candidate, out=candidate)
            subtract(h, candidate, out=out)
            out *= z
            out += candidate
            h = out
    return run.y, run.finals(xp, h0, reverse)


def rnn(xp: Any, x: Any, packed: Packed, h0: Any, reverse: Sequence[bool]) -> tuple[Any, Any]:
    """Y [seq, directions, batch, hidden] and Y_h of a tanh RNN."""
    hidden = h0.shape[-1]
    run = _Run.start(xp, x, packed, h0, 0)
    tanh = xp.tanh
    for d, back in enumerate(reverse):
        r, h = packed.r[d], h0[d]
        for step_inputs, out in run.steps(d, hidden, back):
            xp.dot(h, r, out=out)
            out += step_inputs
            tanh(out, out=out)
            h = out
    return run.y, run.finals(xp, h0, reverse)
