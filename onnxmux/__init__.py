"""onnxmux: an ONNX inference runtime whose execution providers are plugins.

Written to be a drop-in for onnxruntime's Python API: ``import onnxmux as ort``.
"""

from onnxmux.core import deferred_imports

deferred_imports.defer()  # before anything imports onnx-ir

from onnxmux.core.custom_ops import CustomOp, custom_op, register_custom_op, unregister_custom_op
from onnxmux.core.discovery import get_all_providers, get_available_providers, register_provider
from onnxmux.core.errors import (
    EngineError,
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelLoaded,
    NoModel,
    NoSuchFile,
    OnnxMuxError,
    ProviderError,
    RuntimeException,
    RuntimeFailure,
    UnsupportedModel,
    UnsupportedOperator,
)
from onnxmux.core.node_arg import ModelMetadata, NodeArg
from onnxmux.core.optimizer import PatternRule, Rule
from onnxmux.core.memory import OrtAllocatorType, OrtArenaCfg, OrtDevice, OrtMemoryInfo, OrtMemType
from onnxmux.core.options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from onnxmux.core.provider import CompileProvider, DataTransfer, ExecutionProvider, KernelProvider, Subgraph
from onnxmux.core.iobinding import IOBinding
from onnxmux.core.ortvalue import OrtValue, OrtValueVector
from onnxmux.core.registry import KernelRegistry
from onnxmux.core.runtime_info import (
    disable_telemetry_events,
    enable_telemetry_events,
    get_build_info,
    get_device,
    get_version_string,
    set_default_logger_severity,
    set_default_logger_verbosity,
    set_seed,
)
from onnxmux.core.session import InferenceSession
from onnxmux.core.sparse import OrtSparseFormat, SparseTensor

__version__ = "0.1.0"

__all__ = [
    "CompileProvider",
    "CustomOp",
    "DataTransfer",
    "EPFail",
    "EngineError",
    "ExecutionMode",
    "ExecutionOrder",
    "Fail",
    "ExecutionProvider",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "IOBinding",
    "KernelProvider",
    "KernelRegistry",
    "ModelLoaded",
    "ModelMetadata",
    "NoModel",
    "NoSuchFile",
    "NodeArg",
    "OrtAllocatorType",
    "OrtArenaCfg",
    "OrtDevice",
    "OrtMemType",
    "OrtMemoryInfo",
    "OrtSparseFormat",
    "OrtValue",
    "OrtValueVector",
    "OnnxMuxError",
    "PatternRule",
    "ProviderError",
    "Rule",
    "RunOptions",
    "RuntimeException",
    "RuntimeFailure",
    "SessionOptions",
    "SparseTensor",
    "Subgraph",
    "UnsupportedModel",
    "UnsupportedOperator",
    "custom_op",
    "disable_telemetry_events",
    "enable_telemetry_events",
    "get_all_providers",
    "get_available_providers",
    "get_build_info",
    "get_device",
    "get_version_string",
    "register_custom_op",
    "register_provider",
    "set_default_logger_severity",
    "set_default_logger_verbosity",
    "set_seed",
    "unregister_custom_op",
    "__version__",
]
