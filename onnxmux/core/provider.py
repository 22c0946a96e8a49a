"""The execution-provider interfaces that the core and every provider plugin are written against.

A provider is either kernel-based (a kernel per operator, claiming single nodes) or
compile-based (shown the graph, it claims groups of nodes and compiles each group into one
callable). Both declare their device and how arrays move to it and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.cost import estimate
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.registry import KernelDef, KernelRegistry

HOST = "cpu"
#: The version of the provider API this runtime implements (``major.minor``). A provider
#: declares the version it was written for in ``api_version``; a different major is refused.
API_VERSION = "1.0"


def api_problem(cls: type[ExecutionProvider]) -> str | None:
    """Why a provider class written for another provider API cannot be used, or None."""
    declared = str(getattr(cls, "api_version", "") or "")
    if declared.split(".")[0] != API_VERSION.split(".")[0]:
        return f"written for provider API {declared or 'unknown'}, this onnxmux implements {API_VERSION}"
    return None


def transfer_problem(provider: ExecutionProvider | type[ExecutionProvider]) -> str | None:
    """Why a provider cannot be used: a non-host device needs a data transfer."""
    if provider.device != HOST and provider.data_transfer is None:
        return f"its device is '{provider.device}' but it has no data_transfer to move values there"
    return None


def class_transfer_problem(cls: type[ExecutionProvider]) -> str | None:
    """``transfer_problem`` of a class that cannot set ``data_transfer`` later (no ``__init__`` of
    its own); one that sets it in ``__init__`` is checked when the session creates it."""
    overrides_init = any("__init__" in vars(k) for k in cls.__mro__[: cls.__mro__.index(ExecutionProvider)])
    return None if overrides_init else transfer_problem(cls)


class DataTransfer:
    """Moves values between host memory (numpy arrays) and a provider's device.

    The contract (docs/providers.md, "Device memory"): ``to_device`` receives a host numpy
    array (0-d, read-only, ml_dtypes and empty arrays included) that it must not modify and may
    alias only if the device is host memory; ``to_host`` returns a numpy array the caller may
    keep. Initializers are uploaded once, at session creation.
    """

    #: The class (or tuple of classes) of the device's arrays; when set, every output of the
    #: provider is checked to be one (so a host array returned by mistake is caught).
    array_type: ClassVar[type | tuple[type, ...] | None] = None

    def to_device(self, value: Any) -> Any:
        """A host value (numpy array) as the device holds it."""
        raise NotImplementedError

    def to_host(self, value: Any) -> Any:
        """A device value back as a numpy array."""
        raise NotImplementedError

    def describe(self, value: Any) -> tuple[np.dtype, tuple[int, ...]] | None:
        """The numpy element type and shape of a device value, for the output checks; None
        when they cannot be read (then only the count and the array class are checked).

        The default reads ``value.dtype`` and ``value.shape`` (numpy, CuPy, PyTorch spellings).
        """
        dtype = getattr(value, "dtype", None)
        if dtype is None or not hasattr(value, "shape"):
            return None
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = np.dtype(str(dtype).rsplit(".", 1)[-1])
        return dtype, tuple(int(d) for d in value.shape)

    def copier(self, target_device: str, target: DataTransfer) -> Callable[[Any], Any] | None:
        """A function copying a value of this device straight to ``target_device`` (whose
        transfer is ``target``), or None to copy through host memory (the default).

        Asked once per pair of devices at session creation; the function runs at every copy.
        """
        return None


class ExecutionProvider:
    """Base of every provider: its names, device, options and availability.

    Subclasses set ``name`` (onnxruntime's spelling, e.g. ``CPUExecutionProvider``),
    ``aliases`` (short names such as ``cpu``), ``device`` (``cpu``, ``cuda:0``...), and
    ``option_types``: each accepted option with the function that parses its value (options
    arrive as strings from onnxruntime-style code, or as native values).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    device: ClassVar[str] = HOST
    option_types: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    #: Option values used when the user does not give them (already parsed).
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The provider API version the provider was written for (see ``API_VERSION``).
    api_version: ClassVar[str] = API_VERSION
    #: How values reach ``device``; None for providers working on host memory.
    data_transfer: DataTransfer | None = None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = self.parse_options(options or {})
        #: The session's settings, set by ``configure`` before the provider claims any node.
        self.provider_settings = ProviderSettings(dict(self.option_defaults) | self.options)

    def configure(self, settings: ProviderSettings) -> None:
        """Receive the session's settings (called once per session, after the model is loaded)."""
        self.provider_settings = settings

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and convert options; unknown names and bad values raise InvalidArgument."""
        parsed = {}
        for key, value in options.items():
            parser = cls.option_types.get(key)
            if parser is None:
                known = ", ".join(sorted(cls.option_types)) or "none"
                raise InvalidArgument(f"{cls.name}: unknown option '{key}' (accepted options: {known})")
            try:
                parsed[key] = parser(value)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"{cls.name}: option '{key}' has an invalid value {value!r}: {exc}") from exc
        return parsed

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the provider can run on this machine, else why not (package, hardware)."""
        return None

    def node_cost(self, ctx: NodeContext) -> float:
        """The work of running a node here, in the unit of one byte copied between devices, for
        ``session.placement_policy`` = cost; the default counts multiply-adds or output elements."""
        return estimate(ctx)

    def rewrite_partition(self, graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
        """Provider-specific fusions among the nodes assigned to it (optimization level ALL).

        May replace nodes of ``nodes`` in ``graph`` by others; returns the nodes it owns after.
        """
        return nodes

    def wrap_plan(self, plan: Any) -> Any:
        """The session's compiled plan as this provider wants it run (CUDA graphs, say); default: as is."""
        return plan


@dataclass(frozen=True)
class ProviderSettings:
    """What a provider may read of its session: its options and the session's settings.

    ``options`` holds the parsed options with ``option_defaults`` filled in; ``config`` the
    session config entries (``SessionOptions.add_session_config_entry``); ``model_dir`` the
    folder of the model file (None for a model given as bytes), a place for caches.
    """

    options: Mapping[str, Any]
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    graph_optimization_level: int = 99
    config: Mapping[str, str] = field(default_factory=dict)
    model_dir: Path | None = None

    def config_entry(self, key: str, default: str = "") -> str:
        """A session config entry, or ``default``."""
        return self.config.get(key, default)


class KernelProvider(ExecutionProvider):
    """A provider that runs single nodes through kernels from its registry."""

    registry: ClassVar[KernelRegistry]
    #: The array module its kernels compute with (numpy on the CPU).
    xp: ClassVar[Any] = np

    def kernel_for(self, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
        """The kernel that runs this node, or None with the reason it cannot."""
        kernel = self.registry.lookup(ctx.domain, ctx.op_type, ctx.opset)
        if kernel is None:
            versions = self.registry.versions(ctx.domain, ctx.op_type)
            if versions:
                return None, f"no kernel for opset {ctx.opset} (kernels from versions {versions})"
            return None, "no kernel for this operator"
        if kernel.supports is not None:
            reason = kernel.supports(ctx)
            if reason:
                return None, reason
        return kernel, None


@dataclass
class Subgraph:
    """A group of nodes handed to a compile-based provider, as a standalone ONNX model.

    ``model`` holds the nodes, the initializers they read, and typed inputs and outputs;
    ``inputs`` and ``outputs`` name the values the compiled callable takes and returns, in order.
    """

    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]
    nodes: list[ir.Node]


class CompileProvider(ExecutionProvider):
    """A provider that compiles whole subgraphs (OpenVINO, TensorRT...)."""

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        """The groups of ``candidates`` (nodes no earlier provider took) this provider wants.

        The partitioner splits a group that could not be fused without a cycle.
        """
        raise NotImplementedError

    def compile(self, subgraph: Subgraph) -> Callable[..., tuple]:
        """A callable taking the subgraph's inputs (positionally) and returning its outputs as a tuple."""
        raise NotImplementedError

    def explain(self, node: ir.Node) -> str:
        """Why a node was not claimed, for ``onnxmux plan``."""
        return "not claimed by the provider"

    def export_compiled(self, compiled: Callable[..., tuple]) -> bytes | None:
        """What ``compile`` returned, serialized for an EPContext node (``ep.context_enable``);
        None (the default) when it cannot be, and the partition's nodes are kept instead."""
        return None

    def import_compiled(self, blob: bytes, subgraph: Subgraph) -> Callable[..., tuple]:
        """A callable like ``compile``'s, rebuilt from ``export_compiled``'s bytes; ``subgraph``
        holds the EPContext node, its typed inputs and outputs (the call order)."""
        raise NotImplementedError(f"{self.name} cannot load compiled partitions (EPContext nodes)")
