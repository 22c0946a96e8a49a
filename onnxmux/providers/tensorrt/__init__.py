"""The TensorRT execution provider (``pip install onnxmux[tensorrt]``): experimental, never run on hardware.

TensorRT and CuPy are imported only when the provider is used or its availability is checked.
See docs/tensorrt.md for what has and has not been exercised.
"""

from onnxmux.providers.tensorrt.provider import TensorrtExecutionProvider

__all__ = ["TensorrtExecutionProvider"]
