"""onnxruntime's ``capi._pybind_state`` path: the same names as ``onnxruntime_pybind11_state``."""

from onnxmux.capi.onnxruntime_pybind11_state import *  # noqa: F401,F403
from onnxmux.capi.onnxruntime_pybind11_state import __all__  # noqa: F401
