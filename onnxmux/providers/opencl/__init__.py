"""The OpenCL execution provider (``opencl``): OpenCL C kernels on any OpenCL device.

Install ``onnxmux[opencl]`` (pyopencl) and an OpenCL platform: a GPU vendor's, or PoCL for
CPUs. See docs/opencl.md.
"""

from onnxmux.providers.opencl.provider import OpenCLExecutionProvider

__all__ = ["OpenCLExecutionProvider"]
