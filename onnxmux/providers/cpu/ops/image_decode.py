"""ImageDecoder: encoded image bytes to an (H, W, C) uint8 tensor, decoded by Pillow.

Pillow is an optional dependency, imported when a session first builds an ImageDecoder
kernel: without it the kernel still loads, and running the node fails with an error that names
the node and the missing package.
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from onnxmux.core.errors import RuntimeFailure
from onnxmux.providers.cpu.registry import op

# pixel_format -> (Pillow mode, channel order applied to the decoded pixels)
_FORMATS = {"RGB": ("RGB", slice(None)), "BGR": ("RGB", slice(None, None, -1)), "Grayscale": ("L", slice(None))}
# what Pillow raises for data it cannot identify or decode
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def _pillow_image() -> Any:
    """Pillow's Image module, or None when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError:  # optional dependency
        return None
    return Image


def _decode(Image: Any, data: bytes, mode: str) -> np.ndarray | None:
    """The decoded pixels as (H, W, C) uint8, or None when the data is not a decodable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except _DECODE_ERRORS:
        return None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


@op("ImageDecoder", 20)
def image_decoder(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Decode a BMP/JPEG/PNG/TIFF/WebP/PNM byte stream to (H, W, C) RGB, BGR or grayscale pixels."""
    pixel_format = ctx.attr("pixel_format", "RGB")
    if pixel_format not in _FORMATS:
        raise ctx.error(f"unsupported pixel_format '{pixel_format}' (expected RGB, BGR or Grayscale)")
    mode, channel_order = _FORMATS[pixel_format]
    channels = 1 if mode == "L" else 3
    Image = _pillow_image()

    def run(encoded_stream):
        if Image is None:
            raise RuntimeFailure(f"{ctx.describe()}: ImageDecoder needs Pillow, which is not installed "
                                 "(pip install pillow)")
        pixels = _decode(Image, np.asarray(encoded_stream, dtype=np.uint8).tobytes(), mode)
        if pixels is None:  # undecodable input gives an empty image, as the operator specifies
            return xp.zeros((0, 0, channels), dtype=np.uint8)
        return xp.asarray(np.ascontiguousarray(pixels[:, :, channel_order]))

    return run
