"""ONNX operators where OpenVINO's result differs from ONNX's definition, and when.

OpenVINO accepts these nodes, so asking it cannot find them: the list comes from running
ONNX's node tests with ``["openvino", "cpu"]`` against the CPU provider alone (see
docs/openvino.md). Each check takes the node and the opset of its domain and returns why the
node stays with the next provider, or None.
"""

from __future__ import annotations

from typing import Any, Callable

import onnx_ir as ir

Check = Callable[[ir.Node, int], "str | None"]

#: Ops whose random streams OpenVINO draws differently (and not reproducibly across sessions).
RANDOM_OPS = ("Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
_UNSIGNED = {ir.DataType.UINT8, ir.DataType.UINT16, ir.DataType.UINT32, ir.DataType.UINT64}
_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


def _attr(node: ir.Node, name: str, default: Any = None) -> Any:
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _present(node: ir.Node, index: int) -> bool:
    return len(node.inputs) > index and node.inputs[index] is not None


def _always(reason: str) -> Check:
    return lambda node, opset: reason


def _attention(node: ir.Node, opset: int) -> str | None:
    if _attr(node, "left_window_size", -1) >= 0 or _attr(node, "right_window_size", -1) >= 0:
        return "OpenVINO ignores Attention's local window (left/right_window_size)"
    if _attr(node, "is_causal", 0) and _present(node, 3) and _present(node, 4):
        return "OpenVINO aligns the causal mask differently when an attention mask and a past key are both given"
    return None


def _bitshift(node: ir.Node, opset: int) -> str | None:
    if node.inputs[0].dtype not in _UNSIGNED:
        return "OpenVINO shifts signed integers differently from ONNX (negative values, shifts past the width)"
    return None


def _dft(node: ir.Node, opset: int) -> str | None:
    if opset < 20:
        return "OpenVINO translates DFT before opset 20 (axis as an attribute) with a different output layout"
    return None


def _pool(node: ir.Node, opset: int) -> str | None:
    if _attr(node, "ceil_mode", 0):
        return "with ceil_mode, OpenVINO keeps a last window that starts in the padding, which ONNX drops"
    return None


def _reduce_extreme(node: ir.Node, opset: int) -> str | None:
    if node.inputs[0].dtype in _FLOATS:
        return f"OpenVINO's float {node.op_type} treats infinities as the extreme finite values (rows of infinities differ)"
    return None


def _recurrent(node: ir.Node, opset: int) -> str | None:
    if _attr(node, "layout", 0):
        return "OpenVINO does not honour layout=1 (batch-major) for recurrent nodes"
    return None


def _resize(node: ir.Node, opset: int) -> str | None:
    mode = _attr(node, "mode", "nearest")
    if _attr(node, "antialias", 0):
        return "OpenVINO's Resize antialiasing differs from ONNX's"
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return "OpenVINO ignores Resize's keep_aspect_ratio_policy"
    if _attr(node, "exclude_outside", 0):
        return "OpenVINO ignores Resize's exclude_outside"
    if mode != "nearest" and _attr(node, "coordinate_transformation_mode", "half_pixel") == "align_corners":
        return "OpenVINO's align_corners interpolation differs from ONNX's when downsampling"
    return None


def _roi_align(node: ir.Node, opset: int) -> str | None:
    if _attr(node, "mode", "avg") == "max":
        return "OpenVINO's max-mode RoiAlign pools the sampling points differently from ONNX's"
    return None


def _space_to_depth(node: ir.Node, opset: int) -> str | None:
    if _attr(node, "mode", "DCR") != "DCR":
        return "OpenVINO ignores SpaceToDepth's mode and always uses DCR"
    return None


def _tile(node: ir.Node, opset: int) -> str | None:
    if node.inputs[1].const_value is None:
        return "OpenVINO's CPU Tile gives wrong values when the repeats are not a constant"
    return None


DEVIATIONS: dict[str, Check] = {
    "Attention": _attention,
    "AveragePool": _pool,
    "BitShift": _bitshift,
    "DFT": _dft,
    "DynamicQuantizeLinear": _always("OpenVINO rounds halfway cases differently (it adds the zero point before rounding)"),
    "GRU": _recurrent,
    "LSTM": _recurrent,
    "MaxPool": _pool,
    "NonMaxSuppression": _always("OpenVINO compares boxes with the IoU threshold differently (boundary cases)"),
    "QuantizeLinear": _always("OpenVINO rounds halfway cases differently (it adds the zero point before rounding)"),
    "ReduceMax": _reduce_extreme,
    "ReduceMin": _reduce_extreme,
    "Resize": _resize,
    "RNN": _recurrent,
    "RoiAlign": _roi_align,
    "SpaceToDepth": _space_to_depth,
    "Tile": _tile,
    "TopK": _always("OpenVINO does not keep ONNX's order (lower index first) among equal values"),
    **{op: _always("OpenVINO draws different random numbers than ONNX's reference") for op in RANDOM_OPS},
}
