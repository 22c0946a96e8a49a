"""The CUDA execution provider (``cuda``): CuPy kernels on an NVIDIA GPU.

Install ``onnxmux[cuda]`` (CuPy for CUDA 13) or ``onnxmux[cuda12]`` (CUDA 12). CuPy is imported
only when the provider is used or its availability is checked. See docs/cuda.md.
"""

from onnxmux.providers.cuda.provider import CUDAExecutionProvider

__all__ = ["CUDAExecutionProvider"]
