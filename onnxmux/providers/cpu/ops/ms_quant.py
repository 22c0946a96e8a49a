"""CPU kernel of onnxruntime's MatMulNBits: a MatMul whose weight is quantized block-wise along K
to 2, 4 or 8 bits. The weight is dequantized once, at session creation when B, scales and zero
points are initializers (else on each run), and the product is an ordinary float MatMul.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op

DOMAIN = "com.microsoft"
_BITS = (2, 4, 8)


def _unpack(xp: Any, packed: Any, bits: int) -> Any:
    """uint8 bytes -> the ``8 // bits`` values each holds, lowest bits first, along the last axis."""
    shifts = xp.arange(0, 8, bits, dtype=np.uint8)
    values = (packed[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return values.reshape(*packed.shape[:-1], -1)


def dequantize_blocks(
    xp: Any, b: Any, scales: Any, zero_points: Any, bits: int, block: int, n: int, k: int, dtype: Any
) -> Any:
    """The (N, K) float weight of MatMulNBits' packed (N, k_blocks, blob) ``b``.

    ``zero_points`` is packed uint8 (N, ceil(k_blocks * bits / 8)), unpacked in ``dtype``
    (N, k_blocks), or None (the midpoint 2^(bits-1)).
    """
    blocks = -(-k // block)
    q = _unpack(xp, b.reshape(n, blocks, -1), bits)[:, :, :block].astype(dtype)
    scales = scales.reshape(n, blocks, 1).astype(dtype)
    if zero_points is None:
        zero = np.asarray(1 << (bits - 1), dtype)
    elif zero_points.dtype == np.uint8:
        zero = _unpack(xp, zero_points.reshape(n, -1), bits)[:, :blocks, None].astype(dtype)
    else:
        zero = zero_points.reshape(n, blocks, 1).astype(dtype)
    return ((q - zero) * scales).reshape(n, blocks * block)[:, :k]


@op("MatMulNBits", 1, domain=DOMAIN)
def matmul_nbits(ctx: NodeContext, xp: Any):
    """``A @ dequantize(B).T (+ bias)``."""
    n, k, bits, block = ctx.attr("N"), ctx.attr("K"), ctx.attr("bits", 4), ctx.attr("block_size")
    if bits not in _BITS:
        raise ctx.error(f"bits must be one of {', '.join(map(str, _BITS))}, got {bits}")
    if ctx.attr("weight_prepacked", 0):
        raise ctx.error("prepacked weights (weight_prepacked != 0) are specific to other providers")
    info = ctx.inputs[0]
    dtype = info.dtype if info is not None and info.dtype is not None else np.dtype(np.float32)

    def weight(b, scales, zero_points):
        return dequantize_blocks(xp, b, scales, zero_points, bits, block, n, k, dtype).T

    b, scales, zero_points = (ctx.constant(i) for i in (1, 2, 3))
    has_zero_points = ctx.num_inputs > 3 and ctx.inputs[3] is not None
    fixed = None
    if b is not None and scales is not None and (zero_points is not None or not has_zero_points):
        fixed = weight(xp.asarray(b), xp.asarray(scales), None if zero_points is None else xp.asarray(zero_points))

    def run(a, b, scales, zero_points=None, g_idx=None, bias=None):
        if g_idx is not None:
            raise ValueError("the deprecated g_idx input is not supported")
        w = fixed if fixed is not None else weight(b, scales, zero_points)
        y = xp.matmul(a, w.astype(a.dtype, copy=False))
        return y + bias if bias is not None else y

    return run
