"""What the OpenCL kernel modules share: the registry, OpenCL C type definitions, broadcasting
geometry, launch sizes and the checks kernels decline nodes with.

Nothing here imports pyopencl: the kernel modules register themselves when the provider module
is imported, which must work on machines without OpenCL. At run time the kernels reach the
device only through the runtime they receive as ``xp`` (``device.OpenCLRuntime``).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.registry import KernelRegistry

REGISTRY = KernelRegistry()
op = REGISTRY.register

#: The highest tensor rank the kernels' geometry structs hold (after collapsing dims).
MAX_RANK = 8
#: Work-items per group of the one-dimensional kernels (one fixed size: one compile per kernel).
LOCAL_SIZE = 64
#: Element counts must stay below this: kernels index with 32-bit ints.
MAX_ELEMENTS = 2**31 - 1

FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
BOOL = np.dtype(np.bool_)
INT32 = np.dtype(np.int32)
INT64 = np.dtype(np.int64)
#: The floating types kernels compute in (float64 and float16 only on devices supporting them).
FLOATS = frozenset({FLOAT16, FLOAT32, FLOAT64})
#: Every type an OpenCL buffer holds here: C scalar types, booleans as uchar.
C_TYPES: dict[np.dtype, str] = {
    FLOAT16: "half",
    FLOAT32: "float",
    FLOAT64: "double",
    np.dtype(np.int8): "char",
    np.dtype(np.uint8): "uchar",
    np.dtype(np.int16): "short",
    np.dtype(np.uint16): "ushort",
    INT32: "int",
    np.dtype(np.uint32): "uint",
    INT64: "long",
    np.dtype(np.uint64): "ulong",
    BOOL: "uchar",
}
#: Types that data-movement kernels (Transpose, Concat, Gather...) take: everything but int64,
#: whose tensors are nearly always shape arithmetic that is cheaper on the host.
MOVABLE = frozenset(C_TYPES) - {INT64, np.dtype(np.uint64)}
#: An unsigned C type per element size, for kernels that move elements without reading them.
MOVE_TYPES = {1: "uchar", 2: "ushort", 4: "uint", 8: "ulong"}

Supports = Callable[[NodeContext], "str | None"]


# -- OpenCL C source ------------------------------------------------------------------------


def type_defs(prefix: str, dtype: np.dtype) -> str:
    """Macros for one operand: ``P_T`` (storage), ``P_CT`` (compute), ``P_LOAD``, ``P_STORE``.

    float16 is stored as ``half`` and computed in float through ``vload_half``/``vstore_half_rte``
    (round to nearest even, as numpy rounds), so the arithmetic matches the CPU provider's,
    which computes float16 in float32 and rounds once.
    """
    dtype = np.dtype(dtype)
    if dtype == FLOAT16:
        return (
            f"#define {prefix}_T half\n#define {prefix}_CT float\n"
            f"#define {prefix}_LOAD(p, i) vload_half((i), (p))\n"
            f"#define {prefix}_STORE(p, i, v) vstore_half_rte((v), (i), (p))\n"
        )
    c_type = C_TYPES[dtype]
    return (
        f"#define {prefix}_T {c_type}\n#define {prefix}_CT {c_type}\n"
        f"#define {prefix}_LOAD(p, i) ((p)[i])\n#define {prefix}_STORE(p, i, v) ((p)[i] = (v))\n"
    )


def pragmas(dtypes: Iterable[np.dtype]) -> str:
    """The extension pragma float64 operands need."""
    return "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" if FLOAT64 in {np.dtype(d) for d in dtypes} else ""


def source(dtypes: dict[str, np.dtype], body: str) -> str:
    """A program: pragmas, ``type_defs`` of each named operand, then ``body``."""
    defs = "".join(type_defs(prefix, dtype) for prefix, dtype in dtypes.items())
    return pragmas(dtypes.values()) + defs + body


# -- geometry -------------------------------------------------------------------------------


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a C-contiguous tensor."""
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy's broadcast of the shapes; raises ValueError when they do not broadcast."""
    return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes)))


def broadcast_strides(shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """Element strides reading a contiguous ``shape`` as if broadcast to ``target`` (0 where repeated)."""
    own = contiguous_strides(shape)
    pad = len(target) - len(shape)
    return tuple(
        0 if i < pad or shape[i - pad] == 1 else own[i - pad] for i in range(len(target))
    )


def collapse(dims: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Fewer dims that address the same elements: size-1 dims dropped, mergeable neighbours merged.

    Two neighbouring dims merge when, for every operand, stepping the outer one equals stepping
    the inner one through its whole extent. Returns at least one dim.
    """
    kept = [i for i, d in enumerate(dims) if d != 1]
    out_dims: list[int] = []
    out_strides: list[list[int]] = [[] for _ in strides]
    for i in kept:
        if out_dims and all(s[i] * dims[i] == o[-1] for s, o in zip(strides, out_strides)):
            out_dims[-1] *= dims[i]
            for s, o in zip(strides, out_strides):
                o[-1] = s[i]
            continue
        out_dims.append(dims[i])
        for s, o in zip(strides, out_strides):
            o.append(s[i])
    if not out_dims:
        return [1], [[0] for _ in strides]
    return out_dims, out_strides


def pack(*fields: int | Sequence[int], width: int = MAX_RANK) -> np.ndarray:
    """The bytes of a geometry struct of ints: scalars as they are, lists padded to ``width``."""
    values: list[int] = []
    for field in fields:
        if isinstance(field, (int, np.integer)):
            values.append(int(field))
        else:
            items = [int(v) for v in field]
            if len(items) > width:
                raise ValueError(f"{len(items)} dims exceed the kernels' limit of {width}")
            values.extend(items + [0] * (width - len(items)))
    return np.array(values, dtype=np.int32)


def global_size(count: int, local: int = LOCAL_SIZE) -> tuple[int]:
    """A one-dimensional global size covering ``count`` items in whole groups."""
    return (max(1, -(-count // local)) * local,)


def check_size(shape: Sequence[int]) -> int:
    """The element count of ``shape``; raises when 32-bit indices cannot address it."""
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
        raise ValueError(f"tensor of shape {tuple(shape)} exceeds the 2**31 - 1 elements 32-bit indices address")
    return size


def normalize_axis(axis: int, rank: int) -> int:
    """A non-negative axis; raises ValueError outside [-rank, rank)."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


# -- declining nodes ------------------------------------------------------------------------


def dtype_of(ctx: NodeContext, index: int, output: bool = False) -> np.dtype | None:
    """The static dtype of input (or output) ``index``; None when absent or unknown."""
    types = ctx.outputs if output else ctx.inputs
    info = types[index] if index < len(types) else None
    return None if info is None or info.dtype is None else np.dtype(info.dtype)


def require(ctx: NodeContext, allowed: frozenset[np.dtype], *indices: int) -> str | None:
    """None when inputs ``indices`` (all present ones by default) have dtypes in ``allowed``."""
    chosen = indices or tuple(range(ctx.num_inputs))
    for i in chosen:
        if i >= ctx.num_inputs or ctx.inputs[i] is None:
            continue
        dtype = dtype_of(ctx, i)
        if dtype not in allowed:
            return f"input {i} has type {dtype}, which the OpenCL kernel does not take"
    return None


def floats(ctx: NodeContext) -> str | None:
    """The common check of arithmetic kernels: input 0 is float16/32/64."""
    return require(ctx, FLOATS, 0)


def same_types(*indices: int) -> Supports:
    """A check that the present inputs among ``indices`` (all by default) share one dtype."""

    def check(ctx: NodeContext) -> str | None:
        chosen = indices or range(ctx.num_inputs)
        types = {dtype_of(ctx, i) for i in chosen if i < ctx.num_inputs and ctx.inputs[i] is not None}
        return None if len(types) <= 1 else "inputs of different types"

    return check


def movable(ctx: NodeContext) -> str | None:
    """The check of data-movement kernels: input 0 holds a movable (non-int64) type."""
    if dtype_of(ctx, 0) in (INT64, np.dtype(np.uint64)):
        return "64-bit integer tensors stay on the CPU (shape arithmetic is cheaper on the host)"
    return require(ctx, MOVABLE, 0)


def all_of(*checks: Supports) -> Supports:
    """A check passing when every one of ``checks`` passes; the first reason otherwise."""

    def check(ctx: NodeContext) -> str | None:
        for one in checks:
            reason = one(ctx)
            if reason:
                return reason
        return None

    return check


def constant_input(index: int, what: str) -> Supports:
    """A check that input ``index``, when present, is an initializer (known at session creation)."""

    def check(ctx: NodeContext) -> str | None:
        present = index < ctx.num_inputs and ctx.inputs[index] is not None
        if present and ctx.constant(index) is None:
            return f"the {what} input is computed at run time; the OpenCL kernel needs it constant"
        return None

    return check


def single_output(ctx: NodeContext) -> str | None:
    """A check that only the first output is consumed."""
    if any(ctx.has_output(i) for i in range(1, ctx.num_outputs)):
        return "the OpenCL kernel computes only the first output"
    return None

