"""onnxruntime's native module, as onnxruntime code imports it: the exception classes, the value,
option and device types, and the module functions. Every name here is onnxmux's own object."""

import onnxmux as _onnxmux
from onnxmux.core.errors import NotImplementedFailure as NotImplemented  # noqa: A001 (onnxruntime's name)
from onnxmux.core.iobinding import IOBinding as SessionIOBinding
from onnxmux.core.memory import OrtDeviceMemoryType

_SHARED = [
    # exceptions
    "EPFail", "EngineError", "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "ModelLoaded",
    "NoModel", "NoSuchFile", "RuntimeException",
    # values, options, devices
    "ExecutionMode", "ExecutionOrder", "GraphOptimizationLevel", "InferenceSession", "ModelMetadata", "NodeArg",
    "OrtAllocatorType", "OrtArenaCfg", "OrtDevice", "OrtMemType", "OrtMemoryInfo", "OrtSparseFormat", "OrtValue",
    "OrtValueVector", "RunOptions", "SessionOptions", "SparseTensor",
    # module functions
    "disable_telemetry_events", "enable_telemetry_events", "get_all_providers", "get_available_providers",
    "get_build_info", "get_device", "get_version_string", "set_default_logger_severity",
    "set_default_logger_verbosity", "set_seed",
]  # fmt: skip
globals().update({name: getattr(_onnxmux, name) for name in _SHARED})

__all__ = [*_SHARED, "NotImplemented", "OrtDeviceMemoryType", "SessionIOBinding"]
