"""Region ops: RoiAlign, MaxRoiPool and NonMaxSuppression."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from onnxmux.providers.cpu.registry import op


def _float_type(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64 if dtype == np.float64 else np.float32)


# --- RoiAlign


def _bilinear_taps(xp: Any, coord: Any, size: int) -> list[tuple[Any, Any]]:
    """(index, weight) of the low and high pixels sampling ``coord``; samples over a pixel outside weigh 0."""
    inside = (coord >= -1.0) & (coord <= size)
    coord = xp.maximum(coord, 0.0)
    low = xp.minimum(xp.floor(coord), size - 1).astype(np.int64)
    high = xp.minimum(low + 1, size - 1)
    frac = xp.where(low >= size - 1, 0.0, coord - low)
    return [(low, (1 - frac) * inside), (high, frac * inside)]


def _roi_samples(xp: Any, start: Any, extent: Any, bins: int, grid: Any) -> tuple[Any, Any]:
    """Sample coordinates (R, bins, G) along one axis of each RoI, and which of the G slots are used."""
    slots = xp.arange(max(int(grid.max(initial=1)), 1))
    step = extent / bins
    coords = (start[:, None, None] + xp.arange(bins)[None, :, None] * step[:, None, None]
              + (slots + 0.5)[None, None, :] * (step / xp.maximum(grid, 1))[:, None, None])
    return coords, slots[None, :] < grid[:, None]


class _RoiAlignOptions(NamedTuple):
    mode: str
    offset: float  # 0.5 for half_pixel, 0 for output_half_pixel
    output_height: int
    output_width: int
    sampling_ratio: int
    spatial_scale: float


def _roi_align(xp: Any, x: Any, rois: Any, batch: Any, opts: _RoiAlignOptions) -> Any:
    """RoiAlign of (N, C, H, W) features over (R, 4) boxes into (R, C, out_h, out_w)."""
    height, width = x.shape[2], x.shape[3]
    out_h, out_w, ratio = opts.output_height, opts.output_width, opts.sampling_ratio
    dtype = _float_type(x.dtype)
    boxes = rois.astype(dtype) * opts.spatial_scale - opts.offset
    start_x, start_y = boxes[:, 0], boxes[:, 1]
    extent_x, extent_y = boxes[:, 2] - start_x, boxes[:, 3] - start_y
    if not opts.offset:  # output_half_pixel: RoIs span at least one pixel
        extent_x, extent_y = xp.maximum(extent_x, 1.0), xp.maximum(extent_y, 1.0)
    # sample points per bin and axis: sampling_ratio, else adaptive (none for empty RoIs)
    grid_y = xp.full(len(boxes), ratio) if ratio > 0 else xp.maximum(xp.ceil(extent_y / out_h), 0).astype(np.int64)
    grid_x = xp.full(len(boxes), ratio) if ratio > 0 else xp.maximum(xp.ceil(extent_x / out_w), 0).astype(np.int64)
    ys, used_y = _roi_samples(xp, start_y, extent_y, out_h, grid_y)
    xs, used_x = _roi_samples(xp, start_x, extent_x, out_w, grid_x)
    y_taps, x_taps = _bilinear_taps(xp, ys, height), _bilinear_taps(xp, xs, width)
    channels_last = xp.moveaxis(x, 1, -1)
    b = batch.astype(np.int64)[:, None, None, None, None]
    # weighted tap values, each (R, out_h, Gy, out_w, Gx, C)
    terms = [
        channels_last[b, yi[:, :, :, None, None], xi[:, None, None, :, :]].astype(dtype)
        * (wy[:, :, :, None, None] * wx[:, None, None, :, :])[..., None].astype(dtype)
        for yi, wy in y_taps
        for xi, wx in x_taps
    ]
    used = (used_y[:, None, :, None, None] & used_x[:, None, None, None, :])[..., None]
    if opts.mode == "avg":
        total = xp.where(used, sum(terms), 0).sum(axis=(2, 4))
        count = xp.maximum(grid_y * grid_x, 1).astype(dtype)
        pooled = total / count[:, None, None, None]
    else:  # max of the largest weighted tap of every sample point
        sample_max = xp.maximum(xp.maximum(terms[0], terms[1]), xp.maximum(terms[2], terms[3]))
        pooled = xp.where(used, sample_max, -xp.inf).max(axis=(2, 4))
        pooled = xp.where(used.any(axis=(2, 4)), pooled, 0)
    return xp.moveaxis(pooled, -1, 1).astype(x.dtype)


def _roi_align_kernel(ctx: Any, xp: Any, coordinate_mode: str) -> Callable[..., Any]:
    mode = ctx.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise ctx.error(f"unsupported mode '{mode}'")
    if coordinate_mode not in ("half_pixel", "output_half_pixel"):
        raise ctx.error(f"unsupported coordinate_transformation_mode '{coordinate_mode}'")
    opts = _RoiAlignOptions(
        mode,
        0.5 if coordinate_mode == "half_pixel" else 0.0,
        int(ctx.attr("output_height", 1)),
        int(ctx.attr("output_width", 1)),
        int(ctx.attr("sampling_ratio", 0)),
        float(ctx.attr("spatial_scale", 1.0)),
    )
    if opts.output_height < 1 or opts.output_width < 1 or opts.sampling_ratio < 0:
        raise ctx.error("output sizes must be positive and sampling_ratio non-negative")

    def run(x, rois, batch_indices):
        return _roi_align(xp, x, rois, batch_indices, opts)

    return run


@op("RoiAlign", 10)
def roi_align_10(ctx: Any, xp: Any) -> Callable[..., Any]:
    """RoiAlign-10: bilinear RoI pooling (avg or max), RoI coordinates without the half-pixel shift."""
    return _roi_align_kernel(ctx, xp, "output_half_pixel")


@op("RoiAlign", 16, 22)
def roi_align_16(ctx: Any, xp: Any) -> Callable[..., Any]:
    """RoiAlign-16: bilinear RoI pooling (avg or max) with a coordinate_transformation_mode."""
    return _roi_align_kernel(ctx, xp, ctx.attr("coordinate_transformation_mode", "half_pixel"))


# --- MaxRoiPool


def _round_half_away(xp: Any, v: Any) -> Any:
    return xp.sign(v) * xp.floor(xp.abs(v) + 0.5)


def _pool_masks(xp: Any, start: Any, end: Any, bins: int, size: int) -> Any:
    """(R, bins, size) masks of the pixels in each pooling bin of each RoI along one axis."""
    extent = xp.maximum(end - start + 1, 1)
    edges = xp.arange(bins + 1)[None, :] * (extent / bins)[:, None]
    lo = xp.clip(xp.floor(edges[:, :-1]) + start[:, None], 0, size)
    hi = xp.clip(xp.ceil(edges[:, 1:]) + start[:, None], 0, size)
    pixels = xp.arange(size)
    return (pixels >= lo[:, :, None]) & (pixels < hi[:, :, None])


@op("MaxRoiPool", 1, 22)
def max_roi_pool(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Max pooling of (N, C, H, W) over [batch, x1, y1, x2, y2] RoIs into pooled_shape bins (0 if empty)."""
    pooled = [int(v) for v in ctx.attr("pooled_shape")]
    if len(pooled) != 2 or min(pooled) < 1:
        raise ctx.error(f"pooled_shape must hold two positive sizes, got {pooled}")
    scale = float(ctx.attr("spatial_scale", 1.0))

    def run(x, rois):
        height, width = x.shape[2], x.shape[3]
        corners = _round_half_away(xp, rois[:, 1:].astype(np.float64) * scale)
        rows = _pool_masks(xp, corners[:, 1], corners[:, 3], pooled[0], height)
        cols = _pool_masks(xp, corners[:, 0], corners[:, 2], pooled[1], width)
        features = x[rois[:, 0].astype(np.int64)]  # (R, C, H, W)
        lowest = xp.asarray(-np.inf, dtype=_float_type(x.dtype))
        # max over each bin's columns (R, C, H, pw), then over its rows (R, C, ph, pw)
        by_cols = xp.where(cols[:, None, None], features[:, :, :, None, :], lowest).max(axis=-1)
        by_rows = xp.where(rows[:, None, :, :, None], by_cols[:, :, None], lowest).max(axis=3)
        return xp.where(xp.isneginf(by_rows), 0, by_rows).astype(x.dtype)

    return run


# --- NonMaxSuppression


def _corner_boxes(xp: Any, boxes: Any, center_point: bool) -> tuple[Any, Any, Any, Any]:
    """(y_min, x_min, y_max, x_max) of [y1, x1, y2, x2] or [x_center, y_center, w, h] boxes."""
    if center_point:
        xc, yc, w, h = (boxes[..., i] for i in range(4))
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    y1, x1, y2, x2 = (boxes[..., i] for i in range(4))
    return xp.minimum(y1, y2), xp.minimum(x1, x2), xp.maximum(y1, y2), xp.maximum(x1, x2)


def _pairwise_iou(xp: Any, boxes: Any, center_point: bool) -> Any:
    """IoU of every pair of boxes of each batch: (B, S, S)."""
    y0, x0, y1, x1 = (c.astype(np.float64) for c in _corner_boxes(xp, boxes, center_point))
    area = (y1 - y0) * (x1 - x0)
    inter_h = xp.maximum(xp.minimum(y1[:, :, None], y1[:, None, :]) - xp.maximum(y0[:, :, None], y0[:, None, :]), 0)
    inter_w = xp.maximum(xp.minimum(x1[:, :, None], x1[:, None, :]) - xp.maximum(x0[:, :, None], x0[:, None, :]), 0)
    inter = inter_h * inter_w
    union = area[:, :, None] + area[:, None, :] - inter
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0.0)


def _greedy_select(iou: np.ndarray, scores: np.ndarray, limit: int, iou_threshold: float,
                   score_threshold: float | None) -> list[int]:
    """Box indices kept by greedy NMS, best score first (host-side, one step per kept box)."""
    order = np.argsort(-scores, kind="stable")
    if score_threshold is not None:
        order = order[scores[order] >= score_threshold]
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best = int(order[0])
        kept.append(best)
        order = order[1:][iou[best, order[1:]] <= iou_threshold]
    return kept


@op("NonMaxSuppression", 10, 11)
def non_max_suppression(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Greedy per-class NMS; returns [batch, class, box] rows of the kept boxes as int64."""
    center_point = ctx.attr("center_point_box", 0)
    if center_point not in (0, 1):
        raise ctx.error(f"center_point_box must be 0 or 1, got {center_point}")

    def run(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None):
        limit = 0 if max_output_boxes_per_class is None else int(max_output_boxes_per_class.reshape(-1)[0])
        iou_limit = 0.0 if iou_threshold is None else float(iou_threshold.reshape(-1)[0])
        min_score = None if score_threshold is None else float(score_threshold.reshape(-1)[0])
        if limit <= 0:
            return xp.zeros((0, 3), dtype=np.int64)
        iou = np.asarray(_pairwise_iou(xp, boxes, bool(center_point)))
        host_scores = np.asarray(scores)
        selected = [
            (b, c, box)
            for b in range(host_scores.shape[0])
            for c in range(host_scores.shape[1])
            for box in _greedy_select(iou[b], host_scores[b, c], limit, iou_limit, min_score)
        ]
        return xp.asarray(np.array(selected, dtype=np.int64).reshape(-1, 3))

    return run
