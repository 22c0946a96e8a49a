"""Resize and Upsample: separable nearest, (anti-aliased) linear and cubic resampling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.limits import check_tensor_bytes
from onnxmux.providers.cpu.registry import op

_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_COORD_MODES_11 = frozenset(
    {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"}
)
_COORD_MODES_13 = _COORD_MODES_11 - {"tf_half_pixel_for_nn"}
_COORD_MODES_19 = _COORD_MODES_13 | {"half_pixel_symmetric"}
_ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


@dataclass(frozen=True)
class _Options:
    """The parsed attributes of one Resize/Upsample node."""

    mode: str
    coord_mode: str
    nearest_mode: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    extrapolation: float = 0.0
    antialias: bool = False


# --- coordinate transforms: output positions -> input positions. ``n_out`` is the integer output
# length, ``length`` the exact one (``n_in * scale``, fractional when computed from a scale).


def _half_pixel(x, n_in, n_out, length, scale, start, end):
    return (x + 0.5) / scale - 0.5


def _half_pixel_symmetric(x, n_in, n_out, length, scale, start, end):
    offset = n_in / 2 * (1 - n_out / length)
    return offset + (x + 0.5) / scale - 0.5


def _pytorch_half_pixel(x, n_in, n_out, length, scale, start, end):
    return (x + 0.5) / scale - 0.5 if length > 1 else np.zeros_like(x)


def _align_corners(x, n_in, n_out, length, scale, start, end):
    return x * (n_in - 1) / (length - 1) if length > 1 else np.zeros_like(x)


def _asymmetric(x, n_in, n_out, length, scale, start, end):
    return x / scale


def _tf_half_pixel_for_nn(x, n_in, n_out, length, scale, start, end):
    return (x + 0.5) / scale


def _tf_crop_and_resize(x, n_in, n_out, length, scale, start, end):
    if length > 1:
        return start * (n_in - 1) + x * (end - start) * (n_in - 1) / (length - 1)
    return np.full_like(x, 0.5 * (start + end) * (n_in - 1))


_TRANSFORMS: dict[str, Callable[..., np.ndarray]] = {
    "half_pixel": _half_pixel,
    "half_pixel_symmetric": _half_pixel_symmetric,
    "pytorch_half_pixel": _pytorch_half_pixel,
    "align_corners": _align_corners,
    "asymmetric": _asymmetric,
    "tf_half_pixel_for_nn": _tf_half_pixel_for_nn,
    "tf_crop_and_resize": _tf_crop_and_resize,
}

# --- per-axis sampling plans


def _nearest_index(pos: np.ndarray, rounding: str, scale: float) -> np.ndarray:
    if rounding == "legacy":  # Upsample/Resize-10, as onnxruntime: ceil when downsampling, else floor
        rounding = "ceil" if scale < 1 else "floor"
    if rounding == "round_prefer_floor":
        return np.ceil(pos - 0.5)
    if rounding == "round_prefer_ceil":
        return np.floor(pos + 0.5)
    return np.floor(pos) if rounding == "floor" else np.ceil(pos)


def _linear_kernel(t: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(t))


def cubic_kernel(xp: Any, a: float) -> Callable[[Any], Any]:
    """Keys' cubic convolution kernel with coefficient ``a``: weight of a tap at distance t (|t| < 2)."""

    def kernel(t: Any) -> Any:
        t = xp.abs(t)
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return xp.where(t <= 1, near, xp.where(t < 2, far, 0.0))

    return kernel


def _axis_plan(opts: _Options, n_in: int, n_out: int, scale: float, start: float,
               end: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Input taps (n_out, T), their weights (None for nearest) and the extrapolated outputs (or None)."""
    positions = np.arange(n_out, dtype=np.float64)
    pos = _TRANSFORMS[opts.coord_mode](positions, n_in, n_out, n_in * scale, scale, start, end)
    outside = None
    if opts.coord_mode == "tf_crop_and_resize":
        outside = (pos < 0) | (pos > n_in - 1)
    if opts.mode == "nearest":
        index = np.clip(_nearest_index(pos, opts.nearest_mode, scale), 0, n_in - 1).astype(np.int64)
        return index[:, None], None, outside
    radius, kernel = (1, _linear_kernel) if opts.mode == "linear" else (2, cubic_kernel(np, opts.cubic_a))
    stretch = min(scale, 1.0) if opts.antialias else 1.0
    reach = radius / stretch
    taps = np.floor(pos - reach)[:, None] + 1 + np.arange(math.floor(2 * reach) + 1)
    weights = kernel((taps - pos[:, None]) * stretch)
    if opts.exclude_outside:
        weights = np.where((taps >= 0) & (taps <= n_in - 1), weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(taps, 0, n_in - 1).astype(np.int64), weights, outside


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float64 for double and wide integers, float32 otherwise (half types included)."""
    wide = dtype == np.float64 or (np.issubdtype(dtype, np.integer) and dtype.itemsize >= 4)
    return np.dtype(np.float64 if wide else np.float32)


def _cast_back(xp: Any, y: Any, dtype: np.dtype) -> Any:
    """Float results as ``dtype``: rounded and saturated for integer types."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        y = xp.clip(xp.rint(y), info.min, info.max)
    return y.astype(dtype)


def _resample(xp: Any, x: Any, opts: _Options, out_shape: Sequence[int], scales: Sequence[float],
              starts: Sequence[float], ends: Sequence[float]) -> Any:
    """Resize ``x`` to ``out_shape`` one axis at a time."""
    y = x if opts.mode == "nearest" else x.astype(_compute_dtype(x.dtype))
    extrapolated = None
    for axis, n_out in enumerate(out_shape):
        n_in = x.shape[axis]
        if n_in == n_out and scales[axis] == 1 and opts.coord_mode != "tf_crop_and_resize":
            continue
        index, weights, outside = _axis_plan(opts, n_in, n_out, scales[axis], starts[axis], ends[axis])
        along = (1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1)
        if weights is None:
            y = xp.take(y, xp.asarray(index[:, 0]), axis=axis)
        else:
            w = xp.asarray(weights.astype(y.dtype))
            y = sum(
                xp.take(y, xp.asarray(index[:, t]), axis=axis) * w[:, t].reshape(along)
                for t in range(index.shape[1])
            )
        if outside is not None and outside.any():
            mask = xp.asarray(outside).reshape(along)
            extrapolated = mask if extrapolated is None else extrapolated | mask
    if extrapolated is not None:
        y = xp.where(extrapolated, xp.asarray(opts.extrapolation).astype(y.dtype), y)
    return y if y.dtype == x.dtype else _cast_back(xp, y, x.dtype)


def _floor_shape(shape: Sequence[int], factors: Sequence[float]) -> list[int]:
    return [int(math.floor(n * f)) for n, f in zip(shape, factors)]


def _legacy_options(ctx: Any) -> _Options:
    """Upsample and Resize-10: asymmetric coordinates, nearest or linear."""
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise ctx.error(f"unsupported mode '{mode}'")
    return _Options(mode, "asymmetric", nearest_mode="legacy")


def _legacy_kernel(ctx: Any, xp: Any, opts: _Options, fixed_scales: Sequence[float] | None) -> Callable[..., Any]:
    where = ctx.describe()

    def run(x, scales=None):
        factors = fixed_scales if fixed_scales is not None else [float(s) for s in np.asarray(scales)]
        if len(factors) != x.ndim:
            raise ValueError(f"expected {x.ndim} scales, got {len(factors)}")
        rank = x.ndim
        out_shape = _floor_shape(x.shape, factors)
        check_tensor_bytes(where, out_shape, _compute_dtype(x.dtype))
        return _resample(xp, x, opts, out_shape, factors, [0.0] * rank, [1.0] * rank)

    return run


@op("Upsample", 7)
def upsample_7(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Upsample by the ``scales`` attribute: nearest or linear with asymmetric coordinates."""
    scales = [float(s) for s in ctx.attr("scales")]
    if any(s < 1 for s in scales):
        raise ctx.error("Upsample scales must be >= 1")
    return _legacy_kernel(ctx, xp, _legacy_options(ctx), scales)


@op("Upsample", 9)
@op("Resize", 10)
def resize_10(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Upsample-9 / Resize-10: resize by a ``scales`` input, nearest or linear, asymmetric coordinates."""
    return _legacy_kernel(ctx, xp, _legacy_options(ctx), None)


def _options(ctx: Any, coord_modes: frozenset[str]) -> _Options:
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"unsupported mode '{mode}'")
    coord_mode = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if coord_mode not in coord_modes:
        raise ctx.error(f"unsupported coordinate_transformation_mode '{coord_mode}'")
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    if nearest_mode not in _NEAREST_MODES:
        raise ctx.error(f"unsupported nearest_mode '{nearest_mode}'")
    return _Options(
        mode,
        coord_mode,
        nearest_mode,
        float(ctx.attr("cubic_coeff_a", -0.75)),
        bool(ctx.attr("exclude_outside", 0)),
        float(ctx.attr("extrapolation_value", 0.0)),
        bool(ctx.attr("antialias", 0)) and mode != "nearest",
    )


def _geometry(shape: Sequence[int], axes: Sequence[int], roi: Any, scales: Any, sizes: Any, policy: str,
              uses_roi: bool) -> tuple[list[int], list[float], list[float], list[float]]:
    """Output shape, per-axis scale and roi start/end of a Resize from its roi/scales/sizes inputs."""
    rank = len(shape)
    out_shape, factors = list(shape), [1.0] * rank
    starts, ends = [0.0] * rank, [1.0] * rank
    if uses_roi and roi is not None and roi.size:
        bounds = np.asarray(roi, dtype=np.float64).reshape(-1)
        if bounds.size != 2 * len(axes):
            raise ValueError(f"roi must hold {2 * len(axes)} values, got {bounds.size}")
        for i, a in enumerate(axes):
            starts[a], ends[a] = float(bounds[i]), float(bounds[len(axes) + i])
    has_scales, has_sizes = scales is not None and scales.size > 0, sizes is not None and sizes.size > 0
    if has_scales == has_sizes:
        raise ValueError("exactly one of 'scales' and 'sizes' must be given")
    wanted = np.asarray(scales if has_scales else sizes).reshape(-1)
    if wanted.size != len(axes):
        raise ValueError(f"expected {len(axes)} {'scales' if has_scales else 'sizes'}, got {wanted.size}")
    if has_scales:
        for a, s in zip(axes, wanted.astype(np.float64)):  # the roi extent does not scale the output
            factors[a] = float(s)
            out_shape[a] = int(math.floor(shape[a] * s))
        return out_shape, factors, starts, ends
    ratios = [int(n) / shape[a] for a, n in zip(axes, wanted)]
    if policy != "stretch":
        ratios = [min(ratios) if policy == "not_larger" else max(ratios)] * len(axes)
    for a, n, r in zip(axes, wanted, ratios):
        factors[a] = r
        out_shape[a] = int(n) if policy == "stretch" else int(math.floor(r * shape[a] + 0.5))
    return out_shape, factors, starts, ends


def _resize_kernel(ctx: Any, xp: Any, coord_modes: frozenset[str]) -> Callable[..., Any]:
    opts = _options(ctx, coord_modes)
    axes_attr = ctx.attr("axes", None)
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in _ASPECT_POLICIES:
        raise ctx.error(f"unsupported keep_aspect_ratio_policy '{policy}'")
    uses_roi = opts.coord_mode == "tf_crop_and_resize"
    where = ctx.describe()

    def run(x, roi=None, scales=None, sizes=None):
        axes = list(range(x.ndim)) if axes_attr is None else [a % x.ndim for a in axes_attr]
        geometry = _geometry(x.shape, axes, roi, scales, sizes, policy, uses_roi)
        check_tensor_bytes(where, geometry[0], _compute_dtype(x.dtype))
        return _resample(xp, x, opts, *geometry)

    return run


@op("Resize", 11)
def resize_11(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Resize-11: nearest/linear/cubic resampling to ``scales`` or ``sizes`` (with tf_half_pixel_for_nn)."""
    return _resize_kernel(ctx, xp, _COORD_MODES_11)


@op("Resize", 13, 18)
def resize_13(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Resize-13/18: nearest/linear/cubic resampling; 18 adds axes, antialias and aspect-ratio policies."""
    return _resize_kernel(ctx, xp, _COORD_MODES_13)


@op("Resize", 19)
def resize_19(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Resize-19: as Resize-18, plus the half_pixel_symmetric coordinate mode."""
    return _resize_kernel(ctx, xp, _COORD_MODES_19)
