"""The OpenVINO execution provider (``pip install onnxmux[openvino]``)."""

from onnxmux.providers.openvino.provider import OpenVINOExecutionProvider

__all__ = ["OpenVINOExecutionProvider"]
