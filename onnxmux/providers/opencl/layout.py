"""Data movement: Transpose, Concat, Split, Slice, Gather and Expand as strided copies on the
device; Reshape, Flatten, Squeeze, Unsqueeze and Identity as views without kernels; and
Constant for floating tensors, uploaded once at session creation.

Moves read and write elements as unsigned integers of their size, so one program per element
size serves every dtype. int64 tensors are declined: they are nearly always shape arithmetic
(Shape → Gather → Concat → Reshape), which is cheaper on the host than a round trip. Reshape
reads its shape input in host memory (``host_inputs``), so a shape computed on the CPU needs
no copy; the other inputs that only carry shapes, axes or slice bounds must be initializers,
read on the host once, when the session is created.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import (
    FLOATS,
    INT32,
    INT64,
    LOCAL_SIZE,
    MOVE_TYPES,
    all_of,
    broadcast_shape,
    broadcast_strides,
    collapse,
    constant_input,
    contiguous_strides,
    global_size,
    movable,
    normalize_axis,
    op,
    pack,
    require,
    same_types,
)

_COPY = """
typedef struct { int dims[RANK]; int src[RANK]; int dst[RANK]; } geometry;

__kernel void copy(__global E* dst, __global const E* src, const geometry g, const int src_offset, const int dst_offset) {
    const int inner = get_global_id(0);
    if (inner >= g.dims[RANK - 1]) return;
    int rest = get_global_id(1);
    int s = src_offset + inner * g.src[RANK - 1], d = dst_offset + inner * g.dst[RANK - 1];
#if RANK > 1
    #pragma unroll
    for (int k = RANK - 2; k > 0; --k) {
        const int c = rest % g.dims[k];
        rest /= g.dims[k];
        s += c * g.src[k];
        d += c * g.dst[k];
    }
    s += rest * g.src[0];
    d += rest * g.dst[0];
#endif
    dst[d] = src[s];
}
"""

_GATHER = """
__kernel void gather(__global E* out, __global const E* data, __global const IDX* indices,
                     const int inner, const int count, const int extent, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int within = i % inner;
    const int rest = i / inner;
    long k = indices[rest % count];
    if (k < 0) k += extent;
    k = clamp(k, 0L, (long)extent - 1);
    out[i] = data[((rest / count) * extent + (int)k) * inner + within];
}
"""


class StridedCopy:
    """``dst[dst_offset + Σ c·dst_strides] = src[src_offset + Σ c·src_strides]`` over ``dims``.

    One program per element size and (collapsed) rank, built the first time that rank occurs;
    it runs on a 2-D range, the innermost dim along the first axis.
    """

    def __init__(self, xp: Any, itemsize: int) -> None:
        self._xp = xp
        self._type = MOVE_TYPES[itemsize]

    def __call__(
        self,
        dst: Any,
        src: Any,
        dims: Sequence[int],
        src_strides: Sequence[int],
        dst_strides: Sequence[int],
        src_offset: int = 0,
        dst_offset: int = 0,
    ) -> None:
        """Enqueue the copy (nothing when ``dims`` hold no element)."""
        count = math.prod(dims)
        if count == 0:
            return
        shape, (src_strides, dst_strides) = collapse(dims, [src_strides, dst_strides])
        kernel = self._xp.kernel(f"#define E {self._type}\n#define RANK {len(shape)}\n{_COPY}", "copy")
        geometry = pack(shape, src_strides, dst_strides, width=len(shape))
        grid = (global_size(shape[-1])[0], count // shape[-1])
        kernel(grid, (LOCAL_SIZE, 1), dst, src, geometry, src_offset, dst_offset)


def _itemsize(ctx: NodeContext, index: int = 0) -> int:
    return np.dtype(ctx.inputs[index].dtype).itemsize


# -- copies ---------------------------------------------------------------------------------


@op("Transpose", 1, supports=movable)
def transpose(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Permute the axes (reversed by default)."""
    perm = ctx.attr("perm", None)
    copy = StridedCopy(xp, _itemsize(ctx))

    def run(x: Any) -> Any:
        order = list(range(x.ndim))[::-1] if perm is None else [normalize_axis(p, x.ndim) for p in perm]
        if sorted(order) != list(range(x.ndim)):
            raise ValueError(f"perm {perm} is not a permutation of {x.ndim} axes")
        shape = [x.shape[p] for p in order]
        out = xp.empty(shape, x.dtype)
        strides = contiguous_strides(x.shape)
        copy(out, x, shape, [strides[p] for p in order], contiguous_strides(shape))
        return out

    return run


@op("Concat", 1, supports=all_of(movable, same_types()))
def concat(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Join the inputs along ``axis``; each input is one strided copy into the output."""
    axis = ctx.attr("axis", 1)
    copy = StridedCopy(xp, _itemsize(ctx))

    def run(*inputs: Any) -> Any:
        first = inputs[0]
        a = normalize_axis(axis, first.ndim)
        for x in inputs:
            if x.ndim != first.ndim or x.shape[:a] != first.shape[:a] or x.shape[a + 1 :] != first.shape[a + 1 :]:
                raise ValueError(f"cannot concatenate shapes {[t.shape for t in inputs]} along axis {a}")
        total = sum(x.shape[a] for x in inputs)
        out = xp.empty((*first.shape[:a], total, *first.shape[a + 1 :]), first.dtype)
        outer = math.prod(first.shape[:a])
        inner = math.prod(first.shape[a + 1 :])
        offset = 0
        for x in inputs:
            width = x.shape[a] * inner
            copy(out, x, [outer, width], [width, 1], [total * inner, 1], 0, offset * inner)
            offset += x.shape[a]
        return out

    return run


def _split_sizes(ctx: NodeContext) -> str | None:
    if ctx.opset >= 13:
        return constant_input(1, "split")(ctx)
    return None


@op("Split", 2, 13, supports=all_of(movable, _split_sizes))
def split(ctx: NodeContext, xp: Any) -> Callable[..., tuple]:
    """Cut the input along ``axis`` into parts of the given sizes, or equal parts."""
    axis = ctx.attr("axis", 0)
    parts = ctx.num_outputs
    given = ctx.constant(1) if ctx.opset >= 13 else ctx.attr("split", None)
    sizes_given = None if given is None else [int(s) for s in np.asarray(given).reshape(-1)]
    num_outputs = ctx.attr("num_outputs", None)
    copy = StridedCopy(xp, _itemsize(ctx))

    def sizes_for(extent: int) -> list[int]:
        if sizes_given is not None:
            if sum(sizes_given) != extent or len(sizes_given) != parts:
                raise ValueError(f"split sizes {sizes_given} do not cut a dim of {extent} into {parts} parts")
            return sizes_given
        if num_outputs is not None:
            chunk = -(-extent // parts)
            return [min(chunk, max(0, extent - chunk * i)) for i in range(parts)]
        if extent % parts:
            raise ValueError(f"a dim of {extent} does not split into {parts} equal parts")
        return [extent // parts] * parts

    def run(x: Any, split_input: Any = None) -> tuple:
        a = normalize_axis(axis, x.ndim)
        extent = x.shape[a]
        outer = math.prod(x.shape[:a])
        inner = math.prod(x.shape[a + 1 :])
        results = []
        offset = 0
        for size in sizes_for(extent):
            out = xp.empty((*x.shape[:a], size, *x.shape[a + 1 :]), x.dtype)
            width = size * inner
            copy(out, x, [outer, width], [extent * inner, 1], [width, 1], offset * inner, 0)
            results.append(out)
            offset += size
        return tuple(results)

    return run


def _slice_bounds(ctx: NodeContext) -> str | None:
    if ctx.opset < 10:
        return None
    for index, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
        reason = constant_input(index, what)(ctx)
        if reason:
            return reason
    return None


@op("Slice", 1, 10, supports=all_of(movable, _slice_bounds))
def slice_(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Strided sub-tensor, with numpy's clamping of starts and ends (negative steps too)."""
    if ctx.opset >= 10:
        starts, ends, axes, steps = (ctx.constant(i) for i in range(1, 5))
    else:
        starts, ends, axes, steps = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes", None), None
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = None if axes is None else [int(v) for v in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
    if len(ends) != len(starts) or len(steps) != len(starts) or (axes is not None and len(axes) != len(starts)):
        raise ctx.error("starts, ends, axes and steps differ in length")
    if 0 in steps:
        raise ctx.error("a slice step cannot be 0")
    copy = StridedCopy(xp, _itemsize(ctx))

    def run(x: Any, *bounds: Any) -> Any:
        shape = list(x.shape)
        strides = list(contiguous_strides(x.shape))
        src_strides = list(strides)
        offset = 0
        chosen = range(len(starts)) if axes is None else axes
        for axis, start, end, step in zip(chosen, starts, ends, steps):
            a = normalize_axis(axis, x.ndim)
            picked = range(*slice(start, end, step).indices(x.shape[a]))
            shape[a] = len(picked)
            if picked:
                offset += picked.start * strides[a]
            src_strides[a] = strides[a] * step
        out = xp.empty(shape, x.dtype)
        copy(out, x, shape, src_strides, contiguous_strides(shape), offset, 0)
        return out

    return run


def _gather_types(ctx: NodeContext) -> str | None:
    return movable(ctx) or require(ctx, frozenset({INT32, INT64}), 1)


@op("Gather", 1, supports=_gather_types)
def gather(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """Take slices along ``axis`` at the indices (negative ones count from the end; indices out
    of range are clamped, where the CPU provider raises)."""
    axis = ctx.attr("axis", 0)
    index_type = "long" if np.dtype(ctx.inputs[1].dtype) == INT64 else "int"
    text = f"#define E {MOVE_TYPES[_itemsize(ctx)]}\n#define IDX {index_type}\n{_GATHER}"
    kernel = xp.kernel(text, "gather")

    def run(data: Any, indices: Any) -> Any:
        a = normalize_axis(axis, data.ndim)
        shape = (*data.shape[:a], *indices.shape, *data.shape[a + 1 :])
        out = xp.empty(shape, data.dtype)
        count = out.size
        if count == 0:
            return out
        extent = data.shape[a]
        if extent == 0:
            raise ValueError("cannot gather from an empty axis")
        inner = math.prod(data.shape[a + 1 :])
        kernel(global_size(count), (LOCAL_SIZE,), out, data, indices, inner, indices.size, extent, count)
        return out

    return run


@op("Expand", 8, supports=all_of(movable, constant_input(1, "shape")))
def expand(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """Broadcast to the given shape (numpy rules, either side may be 1)."""
    target = [int(d) for d in np.asarray(ctx.constant(1)).reshape(-1)]
    copy = StridedCopy(xp, _itemsize(ctx))

    def run(x: Any, shape: Any) -> Any:
        out_shape = broadcast_shape(x.shape, target)
        out = xp.empty(out_shape, x.dtype)
        copy(out, x, out_shape, broadcast_strides(x.shape, out_shape), contiguous_strides(out_shape))
        return out

    return run


# -- views ----------------------------------------------------------------------------------


def _reshaped(shape: Sequence[int], request: Sequence[int], allow_zero: bool) -> list[int]:
    """Reshape's target: 0 copies the input dim (unless ``allow_zero``), -1 is inferred."""
    out = [shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(request)]
    if out.count(-1) > 1:
        raise ValueError("at most one dim of the new shape can be -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(shape)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(shape)} into {list(request)}")
        out[out.index(-1)] = total // known
    return out


@op("Reshape", 5, supports=movable, host_inputs=(1,))
def reshape(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """The same buffer under the new shape (a view); the shape is read on the host."""
    allow_zero = bool(ctx.attr("allowzero", 0))
    return lambda x, shape: x.reshape(_reshaped(x.shape, shape.reshape(-1).tolist(), allow_zero))


@op("Flatten", 1, supports=movable)
def flatten(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """A 2-D view: the dims before ``axis``, and the rest."""
    axis = ctx.attr("axis", 1)

    def run(x: Any) -> Any:
        a = axis + x.ndim if axis < 0 else axis
        if not 0 <= a <= x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        return x.reshape((math.prod(x.shape[:a]), math.prod(x.shape[a:])))

    return run


def _axes_from(ctx: NodeContext) -> list[int] | None:
    """Squeeze/Unsqueeze axes: the attribute before opset 13, the (constant) input from then on."""
    axes = ctx.constant(1) if ctx.opset >= 13 else ctx.attr("axes", None)
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _axes_input(ctx: NodeContext) -> str | None:
    return constant_input(1, "axes")(ctx) if ctx.opset >= 13 else None


@op("Squeeze", 1, 13, supports=all_of(movable, _axes_input))
def squeeze(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """A view without the given size-1 dims (every size-1 dim by default)."""
    axes = _axes_from(ctx)

    def run(x: Any, axes_input: Any = None) -> Any:
        if axes is None:
            return x.reshape([d for d in x.shape if d != 1])
        drop = {normalize_axis(a, x.ndim) for a in axes}
        if any(x.shape[a] != 1 for a in drop):
            raise ValueError(f"cannot squeeze axes {axes} of shape {x.shape}: not all are 1")
        return x.reshape([d for i, d in enumerate(x.shape) if i not in drop])

    return run


def _unsqueeze_axes(ctx: NodeContext) -> str | None:
    if ctx.opset >= 13 and (ctx.num_inputs < 2 or ctx.inputs[1] is None):
        return "Unsqueeze needs its axes input"
    return _axes_input(ctx)


@op("Unsqueeze", 1, 13, supports=all_of(movable, _unsqueeze_axes))
def unsqueeze(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """A view with size-1 dims inserted at the given axes (of the output)."""
    axes = _axes_from(ctx) or []

    def run(x: Any, axes_input: Any = None) -> Any:
        rank = x.ndim + len(axes)
        inserted = {normalize_axis(a, rank) for a in axes}
        if len(inserted) != len(axes):
            raise ValueError(f"repeated axes {axes}")
        dims = iter(x.shape)
        return x.reshape([1 if i in inserted else next(dims) for i in range(rank)])

    return run


@op("Identity", 1, supports=movable)
def identity(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """The input itself (tensors are never modified in place)."""
    return lambda x: x


# -- constants ------------------------------------------------------------------------------


def _constant_value(ctx: NodeContext) -> np.ndarray | None:
    """A Constant node's floating value, or None for the other kinds of value."""
    if "value" in ctx.attrs:
        value = np.asarray(ctx.attrs["value"])
    elif "value_float" in ctx.attrs:
        value = np.array(ctx.attrs["value_float"], dtype=np.float32)
    elif "value_floats" in ctx.attrs:
        value = np.array(ctx.attrs["value_floats"], dtype=np.float32)
    else:
        return None
    return value if value.dtype in FLOATS else None


def _floating_constant(ctx: NodeContext) -> str | None:
    if _constant_value(ctx) is None:
        return "only floating constants live on the device (integer ones feed shape arithmetic)"
    return None


@op("Constant", 1, supports=_floating_constant)
def constant(ctx: NodeContext, xp: Any) -> Callable[[], Any]:
    """The value, uploaded once when the session is created."""
    tensor = xp.upload(_constant_value(ctx))
    return lambda: tensor

