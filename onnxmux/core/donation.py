"""Input donation: element-wise kernels write their result into an input that dies at their node.

At plan compile time ``donations`` picks, for each CPU kernel step, one input it may overwrite:
the step is its last reader and reads it once; a step of the same plan made it, with a kernel
known to return arrays of its own (``FRESH``), so it is no feed, initializer, constant, outer or
captured value, nor the result of a copy; and no value that may share its memory (its alias
class: the outputs of every kernel not in ``FRESH`` are joined with that kernel's inputs) is a
graph output, a graph input or read later. The kernel opts in by a ``donate`` attribute on its
run function (``donate(index)`` gives the in-place variant, or None); numpy ufuncs opt in by
nature. The variant checks again at run time (``owned``, and the result's dtype and shape) and
falls back to the ordinary computation. Only the sequential run loop uses donated variants.
"""

from __future__ import annotations

from functools import lru_cache
from math import prod
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core.executor import DISCARD_SLOT
from onnxmux.core.provider import HOST

#: Session option: "0" turns donation off (to compare results, or to rule it out when debugging).
DONATE_KEY = "session.donate_inputs"
#: Outputs with fewer elements (when their shape is static) are not donated: for them a fresh
#: allocation costs less than the variant's checks.
MIN_ELEMENTS = 4096

#: (domain, op) of kernels whose every output is an array they allocated (never an input, a view
#: of one or a cached array; FusedConv's in-place epilogue relies on Conv's being so). Anything
#: else may return a view of its inputs.
FRESH = frozenset(
    [("", op) for op in (
        "Add", "Sub", "Mul", "Div", "Abs", "Neg", "Sqrt", "Exp", "Log", "Reciprocal", "Ceil", "Floor",
        "Erf", "Sin", "Cos", "Tan", "Sinh", "Cosh", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid",
        "HardSwish", "Swish", "Gelu", "Softplus", "Tanh", "MatMul", "Gemm", "Conv", "LayerNormalization",
    )]
    + [("com.onnxmux", op) for op in ("Gelu", "FusedGemm", "FusedConv", "LayerNormalization")]
    + [("com.microsoft", op) for op in ("Gelu", "BiasGelu", "FastGelu")]
)


def takes_part(unit: Any) -> bool:
    """Whether a partition unit may take part: one node run by the CPU provider's own kernels
    (onnxmux.providers.cpu) on host numpy arrays, not a compiled group, a copy or a custom op."""
    kernel = unit.kernel
    return (
        unit.compiled is None
        and kernel is not None
        and unit.provider.device == HOST
        and getattr(unit.provider, "xp", None) is np
        and kernel.factory.__module__.startswith("onnxmux.providers.cpu.")
    )


def is_fresh(node: ir.Node) -> bool:
    """Whether the node's kernel always returns arrays of its own (Clip does once it has a bound)."""
    if node.op_type == "Clip" and (node.domain or "") == "":
        bounds = [v for v in list(node.inputs)[1:] if v is not None and v.name]
        return bool(bounds) or any(a in node.attributes for a in ("min", "max"))
    return ((node.domain or ""), node.op_type) in FRESH


def donations(
    steps: Sequence[Sequence[Any]], kernels: Mapping[int, ir.Node], pinned: set[int]
) -> dict[int, Callable[..., Any]]:
    """The donating run function of each step that gets one, by step index.

    ``steps`` hold (run, input slots, output slots, ...); ``kernels`` names the node of each step
    that may take part (CPU kernel steps); ``pinned`` holds the slots never overwritten (graph
    inputs and outputs, outer values, constants).
    """
    parent: dict[int, int] = {}

    def find(slot: int) -> int:
        while parent.get(slot, slot) != slot:
            slot = parent[slot]
        return slot

    fresh: set[int] = set()
    last_read: dict[int, int] = {}
    for index, step in enumerate(steps):
        ins = [slot for slot in step[1] if slot > DISCARD_SLOT]  # None and unread outputs share no memory
        outs = [slot for slot in step[2] if slot > DISCARD_SLOT]
        for slot in ins:
            last_read[slot] = index
        node = kernels.get(index)
        if node is not None and is_fresh(node):
            fresh.update(outs)
        elif outs:  # the outputs may be views of the inputs
            for slot in ins + outs[1:]:
                parent[find(slot)] = find(outs[0])
    members: dict[int, list[int]] | None = None  # alias classes, gathered when first needed
    worth: dict[int, bool] = {}  # _worth_it by output shape (values of one type share theirs)

    chosen: dict[int, Callable[..., Any]] = {}
    for index, node in kernels.items():
        step = steps[index]
        make = getattr(step[0], "donate", None) or _ufunc_donor(step[0])
        if make is None:
            continue
        shape = node.outputs[0].shape if node.outputs else None
        large = worth.get(id(shape))
        if large is None:
            large = worth[id(shape)] = _worth_it(shape)
        if not large:
            continue
        ins = step[1]
        for position, slot in enumerate(ins):
            if slot not in fresh or ins.count(slot) != 1 or last_read[slot] != index or slot in pinned:
                continue
            if members is None:
                members = {}
                for member in set(last_read) | set(parent) | fresh:
                    members.setdefault(find(member), []).append(member)
            if any(m in pinned or (m != slot and last_read.get(m, -1) >= index) for m in members[find(slot)]):
                continue
            run = make(position)
            if run is not None:
                chosen[index] = run
                break
    return chosen


def _worth_it(shape: ir.Shape | None) -> bool:
    """Whether a node's first output, of ``shape``, may be large enough to gain from donation."""
    if shape is None or not all(isinstance(d, int) for d in shape.dims):
        return True
    return prod(shape.dims) >= MIN_ELEMENTS


def owned(x: Any) -> bool:
    """Whether ``x`` is a plain C-contiguous writeable numpy array that owns its memory."""
    return type(x) is np.ndarray and x.base is None and x.flags.c_contiguous and x.flags.writeable


@lru_cache(maxsize=256)
def _result_dtype(ufunc: np.ufunc, dtypes: tuple[np.dtype, ...]) -> np.dtype | None:
    try:
        return ufunc.resolve_dtypes(dtypes + (None,))[-1]
    except (TypeError, ValueError):
        return None


def _ufunc_donor(run: Any) -> Callable[[int], Callable[..., Any] | None] | None:
    if isinstance(run, np.ufunc) and run.nout == 1 and run.nin in (1, 2):
        return lambda index: ufunc_into(run, index)
    return None


def ufunc_into(ufunc: np.ufunc, index: int) -> Callable[..., Any]:
    """``ufunc`` of one or two arrays, written into argument ``index`` when that array is
    ``owned`` and already has the result's dtype and shape."""
    if ufunc.nin == 1:

        def unary(x: Any) -> Any:
            if owned(x) and _result_dtype(ufunc, (x.dtype,)) == x.dtype:
                return ufunc(x, out=x)
            return ufunc(x)

        return unary

    def binary(a: Any, b: Any) -> Any:
        target = b if index else a
        if owned(target) and fits(target, a, b) and _result_dtype(ufunc, (a.dtype, b.dtype)) == target.dtype:
            return ufunc(a, b, out=target)
        return ufunc(a, b)

    return binary


def fits(target: np.ndarray, *operands: Any) -> bool:
    """Whether ``target`` has the broadcast shape of the (array) operands, ``target`` among them."""
    return all(broadcasts_within(o.shape, target.shape) for o in operands if o is not None)


def broadcasts_within(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without widening it (a tuple check,
    cheaper than ``numpy.broadcast_shapes`` on the per-run path)."""
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def donating(run: Callable[..., Any], write: Callable[[Any], Any], accepts: Callable[[Any], bool]) -> Callable[..., Any]:
    """Mark the one-input kernel ``run`` as able to take its input donated: ``write(x)`` computes
    the same result into ``x``, used when ``x`` is ``owned`` and ``accepts(x)``."""

    def variant(x: Any) -> Any:
        return write(x) if owned(x) and accepts(x) else run(x)

    run.donate = lambda index: variant if index == 0 else None  # type: ignore[attr-defined]
    return run


def full_float(x: Any) -> bool:
    """float32 or float64: the dtypes kernels compute in directly (narrower floats go through float32)."""
    return x.dtype == np.float32 or x.dtype == np.float64
