"""Hand-written CuPy kernels, by family; each module registers into ``CUPY_REGISTRY``.

Importing this package does not import CuPy: the kernel objects are built on first use, in
``raw.py``. Every factory here handles the common case on the GPU in one or two passes and
hands any other case (a dtype or layout the CUDA source does not cover) to the shared CPU
kernel through ``xp``.
"""

from onnxmux.providers.cuda.kernels.registry import CUPY_REGISTRY
from onnxmux.providers.cuda.kernels import attention, conv, elementwise, normalization  # noqa: F401  (registration)

__all__ = ["CUPY_REGISTRY"]
