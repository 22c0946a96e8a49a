"""The provider API: everything an execution-provider plugin may use, in one module.

A plugin imports from here (``from onnxmux import ep``) and declares the version it was
written for (``api_version = ep.API_VERSION`` as a class attribute). Within one major version
nothing listed here is removed or changes meaning; a provider declaring another major is
listed as unavailable, with the reason. See docs/providers.md.
"""

from onnxmux.core.context import NodeContext
from onnxmux.core.discovery import register_provider
from onnxmux.core.errors import (
    EPFail,
    InvalidArgument,
    InvalidGraph,
    OnnxMuxError,
    ProviderError,
    RuntimeFailure,
    UnsupportedOperator,
)
from onnxmux.core.optimizer.editing import ONNXMUX_DOMAIN
from onnxmux.core.provider import (
    API_VERSION,
    HOST,
    CompileProvider,
    DataTransfer,
    ExecutionProvider,
    KernelProvider,
    ProviderSettings,
    Subgraph,
)
from onnxmux.core.registry import KernelDef, KernelFactory, KernelRegistry, SupportsCheck
from onnxmux.core.types import TypeInfo, dtype_name
from onnxmux.partition.failures import ProviderFallbackWarning

__all__ = [
    "API_VERSION",
    "CompileProvider",
    "DataTransfer",
    "EPFail",
    "ExecutionProvider",
    "HOST",
    "InvalidArgument",
    "InvalidGraph",
    "KernelDef",
    "KernelFactory",
    "KernelProvider",
    "KernelRegistry",
    "NodeContext",
    "ONNXMUX_DOMAIN",
    "OnnxMuxError",
    "ProviderError",
    "ProviderFallbackWarning",
    "ProviderSettings",
    "RuntimeFailure",
    "Subgraph",
    "SupportsCheck",
    "TypeInfo",
    "UnsupportedOperator",
    "dtype_name",
    "register_provider",
]
