"""The registry the hand-written CuPy kernels register into; ``op`` is its decorator."""

from onnxmux.core.registry import KernelRegistry

CUPY_REGISTRY = KernelRegistry()
op = CUPY_REGISTRY.register
