"""Tensors made from attributes or shapes: Constant, ConstantOfShape, Range, EyeLike, Dropout."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import onnx

from onnxmux.core.limits import check_tensor_bytes
from onnxmux.core.types import numpy_dtype
from onnxmux.providers.cpu.registry import op

_HALF_FLOATS = {np.dtype(np.float16), numpy_dtype(onnx.TensorProto.BFLOAT16)}


_CONSTANT_ATTRS: dict[str, Callable[[Any], np.ndarray]] = {
    "value": np.asarray,
    "value_float": lambda v: np.array(v, dtype=np.float32),
    "value_floats": lambda v: np.array(v, dtype=np.float32),
    "value_int": lambda v: np.array(v, dtype=np.int64),
    "value_ints": lambda v: np.array(v, dtype=np.int64),
    "value_string": lambda v: np.array(v, dtype=object),
    "value_strings": lambda v: np.array(v, dtype=object),
}


@op("Constant", 1, 11, 12)
def constant(ctx, xp):
    """The tensor held by whichever one of the value attributes is set."""
    given = [name for name in _CONSTANT_ATTRS if name in ctx.attrs]
    if len(given) != 1:
        raise ctx.error(f"exactly one value attribute must be set, got {given or 'none'}")
    value = xp.asarray(_CONSTANT_ATTRS[given[0]](ctx.attrs[given[0]]))

    def run():
        return value

    return run


@op("ConstantOfShape", 9)
def constant_of_shape(ctx, xp):
    """A tensor of the shape given by the input, filled with the one-element ``value`` (default float 0)."""
    value = ctx.attr("value", None)
    fill = np.zeros((), np.float32) if value is None else np.asarray(value)
    if fill.size != 1:
        raise ctx.error(f"value must hold exactly one element, got shape {fill.shape}")
    fill = fill.reshape(())[()]  # a numpy scalar, which device array modules take as a fill value too
    where = ctx.describe()

    def run(shape):
        dims = tuple(shape.tolist())
        check_tensor_bytes(where, dims, fill.dtype)
        return xp.full(dims, fill, dtype=fill.dtype)

    return run


@op("Range", 11, 27)
def range_(ctx, xp):
    """start + i * delta for i < max(ceil((limit - start) / delta), 0); half floats computed in ``stash_type``."""
    stash = numpy_dtype(ctx.attr("stash_type", onnx.TensorProto.FLOAT))
    where = ctx.describe()

    def run(start, limit, delta):
        dtype = start.dtype
        if dtype.kind in "iu":
            first, last, step = (int(v.item()) for v in (start, limit, delta))
            count = max(-((first - last) // step), 0)
            check_tensor_bytes(where, (count,), dtype)
            return xp.arange(count, dtype=dtype) * step + first
        compute = stash if dtype in _HALF_FLOATS else dtype
        first, last, step = (v.astype(compute).item() for v in (start, limit, delta))
        count = max(math.ceil((last - first) / step), 0)
        check_tensor_bytes(where, (count,), compute)
        return (xp.arange(count, dtype=compute) * step + first).astype(dtype)

    return run


@op("EyeLike", 9)
def eye_like(ctx, xp):
    """A 2-D tensor shaped like the input with ones on diagonal ``k``, of type ``dtype`` (default the input's)."""
    dtype = ctx.attr("dtype", None)
    dtype = None if dtype is None else numpy_dtype(dtype)
    k = ctx.attr("k", 0)

    def run(x):
        if x.ndim != 2:
            raise ValueError(f"EyeLike needs a 2-D input, got rank {x.ndim}")
        return xp.eye(*x.shape, k=k, dtype=dtype or x.dtype)

    return run


@op("Dropout", 1, 10)
def dropout_legacy(ctx, xp):
    """Inference-mode Dropout before opset 12: the input unchanged and an all-ones mask (T, bool from opset 10)."""
    mask_bool = ctx.opset >= 10
    want_mask = ctx.has_output(1)

    def run(x):
        if not want_mask:
            return x
        return x, xp.ones(x.shape, dtype=bool if mask_bool else x.dtype)

    return run


@op("Dropout", 12)
def dropout(ctx, xp):
    """Identity with an all-true mask unless ``training_mode``; then zero elements with probability
    ``ratio`` (default 0.5) and scale the rest by 1 / (1 - ratio), drawing from a generator seeded by ``seed``."""
    rng = np.random.RandomState(ctx.attr("seed", None))
    want_mask = ctx.has_output(1)

    def run(x, ratio=None, training_mode=None):
        p = 0.5 if ratio is None else float(ratio)
        if training_mode is None or not bool(training_mode) or p == 0:
            return (x, xp.ones(x.shape, dtype=bool)) if want_mask else x
        if not 0 <= p <= 1:
            raise ValueError(f"ratio must be in [0, 1], got {p}")
        keep = xp.asarray(rng.uniform(0.0, 1.0, x.shape) >= p)
        scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
        y = xp.where(keep, x * scale, x.dtype.type(0))
        return (y, keep) if want_mask else y

    return run
