"""The Reduce family: Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp and SumSquare over
any set of axes, with keepdims and noop_with_empty_axes.

One work-item per output element walks the reduced elements; the kept and the reduced dims
each go through a geometry struct (collapsed first, so contiguous axes cost one stride).
Sums are accumulated in blocks of 256 (error growing with 256 + n/256 rather than n), Max
and Min propagate NaN, and an empty reduction yields the operator's identity (0, 1, -inf,
+inf; NaN for a mean).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import (
    LOCAL_SIZE,
    MAX_RANK,
    all_of,
    collapse,
    constant_input,
    contiguous_strides,
    floats,
    global_size,
    normalize_axis,
    op,
    pack,
    source,
)

_KERNEL = f"""
typedef struct {{
    int keep_rank; int keep_dims[{MAX_RANK}]; int keep_strides[{MAX_RANK}];
    int red_rank; int red_dims[{MAX_RANK}]; int red_strides[{MAX_RANK}];
}} geometry;

inline int offset_of(const geometry* g, int base, int j) {{
    for (int d = g->red_rank - 1; d > 0; --d) {{
        const int c = j % g->red_dims[d];
        j /= g->red_dims[d];
        base += c * g->red_strides[d];
    }}
    return base + j * g->red_strides[0];
}}

inline T_CT blocked_sum(__global const T_T* x, const geometry* g, const int base, const int m, const T_CT shift) {{
    T_CT s = 0;
    for (int j0 = 0; j0 < m; j0 += 256) {{
        const int j1 = min(m, j0 + 256);
        T_CT part = 0;
        for (int j = j0; j < j1; ++j) {{
            const T_CT v = T_LOAD(x, offset_of(g, base, j)) - shift;
            part += TERM;
        }}
        s += part;
    }}
    return s;
}}

__kernel void reduce(__global T_T* out, __global const T_T* x, const geometry g, const int m, const int n) {{
    const int i = get_global_id(0);
    if (i >= n) return;
    int rest = i, base = 0;
    for (int d = g.keep_rank - 1; d >= 0; --d) {{
        const int c = rest % g.keep_dims[d];
        rest /= g.keep_dims[d];
        base += c * g.keep_strides[d];
    }}
#if defined(EXTREME)
    T_CT best = START;
    for (int j = 0; j < m; ++j) {{
        const T_CT v = T_LOAD(x, offset_of(&g, base, j));
        if (v EXTREME best || isnan(v)) best = v;
    }}
    T_STORE(out, i, best);
#elif defined(PRODUCT)
    T_CT p = 1;
    for (int j = 0; j < m; ++j) p *= T_LOAD(x, offset_of(&g, base, j));
    T_STORE(out, i, p);
#elif defined(LOG_SUM_EXP)
    T_CT peak = -INFINITY;
    for (int j = 0; j < m; ++j) {{
        const T_CT v = T_LOAD(x, offset_of(&g, base, j));
        if (v > peak || isnan(v)) peak = v;
    }}
    if (!isfinite(peak)) peak = 0;
    T_STORE(out, i, log(blocked_sum(x, &g, base, m, peak)) + peak);
#else
    const T_CT s = blocked_sum(x, &g, base, m, 0);
    T_STORE(out, i, FINAL);
#endif
}}
"""

#: op -> macros selecting its variant of the kernel.
_VARIANTS: dict[str, str] = {
    "ReduceSum": "#define TERM v\n#define FINAL s\n",
    "ReduceMean": "#define TERM v\n#define FINAL (s / (T_CT)m)\n",
    "ReduceSumSquare": "#define TERM (v * v)\n#define FINAL s\n",
    "ReduceL1": "#define TERM fabs(v)\n#define FINAL s\n",
    "ReduceL2": "#define TERM (v * v)\n#define FINAL sqrt(s)\n",
    "ReduceLogSum": "#define TERM v\n#define FINAL log(s)\n",
    "ReduceLogSumExp": "#define TERM exp(v)\n#define LOG_SUM_EXP\n",
    "ReduceProd": "#define TERM v\n#define PRODUCT\n",
    "ReduceMax": "#define TERM v\n#define EXTREME >\n#define START (-INFINITY)\n",
    "ReduceMin": "#define TERM v\n#define EXTREME <\n#define START INFINITY\n",
}
#: op -> (versions with an axes attribute, versions with an axes input).
_VERSIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "ReduceSum": ((1,), (13,)),
    **{name: ((1,), (18,)) for name in _VARIANTS if name != "ReduceSum"},
}


class Reduction:
    """One reduction kernel of one dtype, over any axes."""

    def __init__(self, xp: Any, op_type: str, dtype: np.dtype) -> None:
        self._xp = xp
        self._kernel = xp.kernel(source({"T": dtype}, _VARIANTS[op_type] + _KERNEL), "reduce")

    def __call__(self, x: Any, axes: Sequence[int], keepdims: bool) -> Any:
        """``x`` reduced over the (normalized, distinct) ``axes``."""
        reduced = set(axes)
        out_shape = [1 if d in reduced else n for d, n in enumerate(x.shape) if keepdims or d not in reduced]
        out = self._xp.empty(out_shape, x.dtype)
        count = out.size
        if count == 0:
            return out
        strides = contiguous_strides(x.shape)
        keep = [d for d in range(x.ndim) if d not in reduced]
        keep_dims, (keep_strides,) = collapse([x.shape[d] for d in keep], [[strides[d] for d in keep]])
        red_dims, (red_strides,) = collapse([x.shape[d] for d in sorted(reduced)], [[strides[d] for d in sorted(reduced)]])
        size = math.prod(x.shape[d] for d in reduced)
        geometry = pack(len(keep_dims), keep_dims, keep_strides, len(red_dims), red_dims, red_strides)
        self._kernel(global_size(count), (LOCAL_SIZE,), out, x, geometry, size, count)
        return out


def _factory(op_type: str, axes_input: bool) -> Callable[[NodeContext, Any], Callable[..., Any]]:
    def factory(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
        reduction = Reduction(xp, op_type, np.dtype(ctx.inputs[0].dtype))
        keepdims = bool(ctx.attr("keepdims", 1))
        noop = axes_input and bool(ctx.attr("noop_with_empty_axes", 0))
        given = ctx.constant(1) if axes_input else ctx.attr("axes", None)
        axes = None if given is None else [int(a) for a in np.asarray(given).reshape(-1)]

        def run(x: Any, axes_tensor: Any = None) -> Any:
            if not axes:
                if noop:
                    return x
                return reduction(x, range(x.ndim), keepdims)
            return reduction(x, {normalize_axis(a, x.ndim) for a in axes}, keepdims)

        return run

    factory.__name__ = f"{op_type.lower()}_{'input' if axes_input else 'attribute'}_axes"
    factory.__doc__ = f"{op_type} with the axes as an {'input' if axes_input else 'attribute'}."
    return factory


for _name, (_attribute_versions, _input_versions) in _VERSIONS.items():
    op(_name, *_attribute_versions, supports=floats)(_factory(_name, axes_input=False))
    op(_name, *_input_versions, supports=all_of(floats, constant_input(1, "axes")))(_factory(_name, axes_input=True))
