"""Random generators: RandomNormal/Uniform(Like), Bernoulli and Multinomial.

Draws come from a numpy ``Generator``. With the ``seed`` attribute every run starts from that
seed, so a node's output is reproducible across runs and sessions; without it the node keeps
one generator seeded from OS entropy, which advances from run to run.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from onnxmux.core.runtime_info import new_generator
from onnxmux.core.types import numpy_dtype
from onnxmux.providers.cpu.registry import op

_FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64)) | {numpy_dtype(16)}
_INTS = frozenset(
    np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
)
_BERNOULLI_TYPES = _FLOATS | _INTS | {np.dtype(bool)}


def _generator_source(ctx: Any) -> Callable[[], np.random.Generator]:
    """A callable giving the generator for one run (freshly seeded when the node has a seed)."""
    seed = ctx.attr("seed", None)
    if seed is None:
        shared = new_generator()  # seeded by onnxmux.set_seed when it was called
        return lambda: shared
    # the float seed's bit pattern, so that fractional and negative seeds stay distinct
    bits = int(np.array(float(seed), dtype=np.float64).view(np.uint64))
    return lambda: np.random.default_rng(bits)


def _dtype_attr(ctx: Any, default: int | None, allowed: Iterable[np.dtype]) -> np.dtype | None:
    """The ``dtype`` attribute as a numpy dtype (None when absent without default)."""
    code = ctx.attr("dtype", default)
    if code is None:
        return None
    try:
        dtype = numpy_dtype(code)
    except (TypeError, ValueError):
        dtype = None
    if dtype not in allowed:
        raise ctx.error(f"unsupported dtype {code}")
    return dtype


def _like_dtype(ctx: Any, allowed: frozenset[np.dtype]) -> Callable[[np.dtype], np.dtype]:
    """Resolve the output dtype of a *Like op: the dtype attribute, else the input's dtype."""
    fixed = _dtype_attr(ctx, None, allowed)
    static = ctx.inputs[0].dtype if ctx.inputs and ctx.inputs[0] is not None else None
    if fixed is None and static is not None and static not in allowed:
        raise ctx.error(f"input type {static} is not a valid output type; set the dtype attribute")

    def resolve(input_dtype: np.dtype) -> np.dtype:
        if fixed is not None:
            return fixed
        if input_dtype not in allowed:
            raise TypeError(f"input type {input_dtype} is not a valid output type; set the dtype attribute")
        return input_dtype

    return resolve


def _draw_float(dtype: np.dtype) -> np.dtype:
    """The dtype numpy draws in for a float output type."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _normal(ctx: Any) -> Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]:
    mean, scale = float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0))

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        values = rng.standard_normal(shape, dtype=_draw_float(dtype))
        return (values * scale + mean).astype(dtype)

    return draw


def _uniform(ctx: Any) -> Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]:
    low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
    if high < low:
        raise ctx.error(f"high ({high}) is below low ({low})")

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        values = rng.random(shape, dtype=_draw_float(dtype))
        return (values * (high - low) + low).astype(dtype)

    return draw


def _shaped_kernel(ctx: Any, xp: Any, draw: Callable[..., np.ndarray]) -> Callable[..., Any]:
    dtype = _dtype_attr(ctx, 1, _FLOATS)
    shape = tuple(int(d) for d in ctx.attr("shape"))
    if any(d < 0 for d in shape):
        raise ctx.error(f"invalid shape {list(shape)}")
    generator = _generator_source(ctx)

    def run():
        return xp.asarray(draw(generator(), shape, dtype))

    return run


def _like_kernel(ctx: Any, xp: Any, draw: Callable[..., np.ndarray]) -> Callable[..., Any]:
    resolve = _like_dtype(ctx, _FLOATS)
    generator = _generator_source(ctx)

    def run(x):
        return xp.asarray(draw(generator(), tuple(x.shape), resolve(x.dtype)))

    return run


@op("RandomNormal", 1, 22)
def random_normal(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Normal(mean, scale) samples of the ``shape`` attribute, as ``dtype``."""
    return _shaped_kernel(ctx, xp, _normal(ctx))


@op("RandomUniform", 1, 22)
def random_uniform(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Uniform[low, high) samples of the ``shape`` attribute, as ``dtype``."""
    return _shaped_kernel(ctx, xp, _uniform(ctx))


@op("RandomNormalLike", 1, 22)
def random_normal_like(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Normal(mean, scale) samples shaped like the input, as ``dtype`` or the input's type."""
    return _like_kernel(ctx, xp, _normal(ctx))


@op("RandomUniformLike", 1, 22)
def random_uniform_like(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Uniform[low, high) samples shaped like the input, as ``dtype`` or the input's type."""
    return _like_kernel(ctx, xp, _uniform(ctx))


@op("Bernoulli", 15, 22)
def bernoulli(ctx: Any, xp: Any) -> Callable[..., Any]:
    """1 with probability p (the input), else 0, as ``dtype`` or the input's type."""
    resolve = _like_dtype(ctx, _BERNOULLI_TYPES)
    generator = _generator_source(ctx)

    def run(p):
        draws = xp.asarray(generator().random(p.shape))
        return (draws < p).astype(resolve(p.dtype))

    return run


@op("Multinomial", 7, 22)
def multinomial(ctx: Any, xp: Any) -> Callable[..., Any]:
    """``sample_size`` class indices per batch row, drawn from softmax of the row's log-probabilities."""
    dtype = _dtype_attr(ctx, 6, (np.dtype(np.int32), np.dtype(np.int64)))
    samples = int(ctx.attr("sample_size", 1))
    if samples < 1:
        raise ctx.error(f"sample_size must be positive, got {samples}")
    generator = _generator_source(ctx)

    def run(logits):
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        cdf = xp.cumsum(xp.exp(shifted), axis=1)
        cdf = cdf / cdf[:, -1:]
        draws = xp.asarray(generator().random((logits.shape[0], samples)))
        picks = (cdf[:, None, :] <= draws[:, :, None]).sum(axis=2)
        return xp.minimum(picks, logits.shape[1] - 1).astype(dtype)

    return run
