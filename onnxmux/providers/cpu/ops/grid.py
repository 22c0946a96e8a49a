"""Sampling grids: GridSample (N-D nearest/linear/cubic with padding modes) and AffineGrid."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from onnxmux.providers.cpu.ops.resize import cubic_kernel
from onnxmux.providers.cpu.registry import op

_PADDING_MODES = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def _unnormalize(g: Any, size: int, align_corners: bool) -> Any:
    """Grid values in [-1, 1] as pixel coordinates along an axis of ``size`` pixels."""
    return (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2


def _reflect(xp: Any, c: Any, size: int, align_corners: bool) -> Any:
    """Coordinates reflected back and forth across the borders until inside, then clipped."""
    low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    span = high - low
    if span <= 0:
        return xp.zeros_like(c)
    distance = xp.abs(c - low)
    flips = xp.floor(distance / span)
    extra = distance - flips * span
    c = xp.where(flips % 2 == 0, low + extra, high - extra)
    return xp.clip(c, 0, size - 1)


def _pad(xp: Any, c: Any, size: int, padding: str, align_corners: bool) -> Any:
    if padding == "border":
        return xp.clip(c, 0, size - 1)
    if padding == "reflection":
        return _reflect(xp, c, size, align_corners)
    return c


def _axis_taps(xp: Any, c: Any, size: int, mode: str, padding: str,
               align_corners: bool) -> list[tuple[Any, Any]]:
    """(index, weight) pairs sampling one axis at coordinates ``c``; indices may fall outside."""
    if mode == "cubic":
        base = xp.floor(c)
        t = c - base
        kernel = cubic_kernel(xp, _CUBIC_A)
        weights = [kernel(t + 1), kernel(t), kernel(1 - t), kernel(2 - t)]
        taps = [_pad(xp, base + k, size, padding, align_corners) for k in (-1, 0, 1, 2)]
        return [(t.astype(np.int64), w) for t, w in zip(taps, weights)]
    c = _pad(xp, c, size, padding, align_corners)
    if mode == "nearest":
        return [(xp.rint(c).astype(np.int64), None)]
    base = xp.floor(c)
    frac = c - base
    base = base.astype(np.int64)
    return [(base, 1 - frac), (base + 1, frac)]


def _compute_dtypes(x_dtype: np.dtype, grid_dtype: np.dtype) -> tuple[np.dtype, np.dtype]:
    """The dtypes of the coordinate and of the value arithmetic."""
    coord = np.dtype(np.float64 if np.float64 in (x_dtype, grid_dtype) else np.float32)
    return coord, np.dtype(np.complex128) if np.issubdtype(x_dtype, np.complexfloating) else coord


def _grid_sample(xp: Any, x: Any, grid: Any, mode: str, padding: str, align_corners: bool) -> Any:
    """Sample x (N, C, D1..Dr) at the normalized positions grid (N, O1..Or, r)."""
    n, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    rank = len(spatial)
    if grid.ndim != rank + 2 or grid.shape[-1] != rank or grid.shape[0] != n:
        raise ValueError(f"grid of shape {grid.shape} does not fit an input of shape {x.shape}")
    coord_dtype, value_dtype = _compute_dtypes(x.dtype, grid.dtype)
    coords = grid.reshape(n, -1, rank).astype(coord_dtype)
    # grid components are ordered x, y, z...: the last one addresses the first spatial axis
    axis_taps = [
        _axis_taps(xp, _unnormalize(coords[:, :, rank - 1 - d], size, align_corners), size, mode, padding,
                   align_corners)
        for d, size in enumerate(spatial)
    ]
    strides = np.cumprod((1,) + spatial[:0:-1])[::-1]
    flat = x.reshape(n, channels, -1)
    out = None
    for combo in itertools.product(*axis_taps):
        index, valid, weight = 0, True, 1
        for (tap, w), size, stride in zip(combo, spatial, strides):
            valid = valid & (tap >= 0) & (tap < size)
            index = index + xp.clip(tap, 0, size - 1) * int(stride)
            if w is not None:
                weight = weight * w
        values = xp.take_along_axis(flat, index[:, None, :], axis=2)
        if mode == "nearest":
            term = xp.where(valid[:, None, :], values, xp.zeros((), dtype=values.dtype))
        else:
            term = values.astype(value_dtype) * xp.where(valid, weight, 0)[:, None, :]
        out = term if out is None else out + term
    out = out.reshape((n, channels) + tuple(grid.shape[1:-1]))
    return out if out.dtype == x.dtype else out.astype(x.dtype)


def _grid_sample_kernel(ctx: Any, xp: Any, modes: dict[str, str],
                        spatial_rank: int | None) -> Callable[..., Any]:
    mode = modes.get(ctx.attr("mode", next(iter(modes))))
    if mode is None:
        raise ctx.error(f"unsupported mode '{ctx.attr('mode')}'")
    padding = ctx.attr("padding_mode", "zeros")
    if padding not in _PADDING_MODES:
        raise ctx.error(f"unsupported padding_mode '{padding}'")
    align_corners = bool(ctx.attr("align_corners", 0))

    def run(x, grid):
        if spatial_rank is not None and x.ndim != spatial_rank + 2:
            raise ValueError(f"expected a {spatial_rank + 2}-D input, got {x.ndim}-D")
        return _grid_sample(xp, x, grid, mode, padding, align_corners)

    return run


@op("GridSample", 16)
def grid_sample_16(ctx: Any, xp: Any) -> Callable[..., Any]:
    """GridSample-16: bilinear/nearest/bicubic sampling of a 4-D input at grid positions."""
    return _grid_sample_kernel(ctx, xp, {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}, 2)


@op("GridSample", 20, 22)
def grid_sample_20(ctx: Any, xp: Any) -> Callable[..., Any]:
    """GridSample-20: N-D linear/nearest/cubic sampling of the input at grid positions."""
    return _grid_sample_kernel(ctx, xp, {"linear": "linear", "nearest": "nearest", "cubic": "cubic"}, None)


@op("AffineGrid", 20)
def affine_grid(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Sampling grid (N, D.., r) of the affine maps theta (N, r, r+1) over a normalized output box."""
    align_corners = bool(ctx.attr("align_corners", 0))

    def axis_positions(size: int) -> Any:
        if align_corners:
            return xp.linspace(-1.0, 1.0, size) if size > 1 else xp.zeros(size)
        return (2 * xp.arange(size) + 1.0) / size - 1

    def run(theta, size):
        dims = [int(d) for d in np.asarray(size)]
        n, spatial = dims[0], dims[2:]
        rank = len(spatial)
        if theta.shape != (n, rank, rank + 1):
            raise ValueError(f"theta of shape {theta.shape} does not fit size {dims}")
        mesh = xp.meshgrid(*[axis_positions(s) for s in spatial], indexing="ij")
        # homogeneous points ordered x, y, z..., 1: reversed spatial axes
        points = xp.stack([m.reshape(-1) for m in reversed(mesh)] + [xp.ones(mesh[0].size)], axis=1)
        grid = xp.einsum("pk,nck->npc", points, theta.astype(np.float64))
        return grid.reshape([n] + spatial + [rank]).astype(theta.dtype)

    return run
