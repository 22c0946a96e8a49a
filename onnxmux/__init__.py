"""onnxmux: an ONNX inference runtime whose execution providers are plugins.

Written to be a drop-in for onnxruntime's Python API: ``import onnxmux as ort``.
"""

from onnxmux.core import deferred_imports

deferred_imports.defer()  # before anything imports onnx-ir

from onnxmux.core.custom_ops import CustomOp, custom_op, register_custom_op, unregister_custom_op
from onnxmux.core.discovery import get_all_providers, get_available_providers, register_provider
from onnxmux.core.errors import (
    InvalidArgument,
    InvalidGraph,
    OnnxMuxError,
    ProviderError,
    RuntimeFailure,
    UnsupportedModel,
    UnsupportedOperator,
)
from onnxmux.core.node_arg import ModelMetadata, NodeArg
from onnxmux.core.optimizer import PatternRule, Rule
from onnxmux.core.options import ExecutionMode, GraphOptimizationLevel, RunOptions, SessionOptions
from onnxmux.core.provider import CompileProvider, DataTransfer, ExecutionProvider, KernelProvider, Subgraph
from onnxmux.core.registry import KernelRegistry
from onnxmux.core.session import InferenceSession

__version__ = "0.1.0"

__all__ = [
    "CompileProvider",
    "CustomOp",
    "DataTransfer",
    "ExecutionMode",
    "ExecutionProvider",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InvalidArgument",
    "InvalidGraph",
    "KernelProvider",
    "KernelRegistry",
    "ModelMetadata",
    "NodeArg",
    "OnnxMuxError",
    "PatternRule",
    "ProviderError",
    "Rule",
    "RunOptions",
    "RuntimeFailure",
    "SessionOptions",
    "Subgraph",
    "UnsupportedModel",
    "UnsupportedOperator",
    "custom_op",
    "get_all_providers",
    "register_custom_op",
    "register_provider",
    "unregister_custom_op",
    "get_available_providers",
    "__version__",
]
