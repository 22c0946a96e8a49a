"""The execution-provider interfaces that the core and every provider plugin are written against.

A provider is either kernel-based (a kernel per operator, claiming single nodes) or
compile-based (shown the graph, it claims groups of nodes and compiles each group into one
callable). Both declare their device and how arrays move to it and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.registry import KernelDef, KernelRegistry

HOST = "cpu"


class DataTransfer:
    """Moves values between host memory (numpy arrays) and a provider's device."""

    def to_device(self, value: Any) -> Any:
        """A host value (numpy array) as the device holds it."""
        raise NotImplementedError

    def to_host(self, value: Any) -> Any:
        """A device value back as a numpy array."""
        raise NotImplementedError


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
    #: How values reach ``device``; None for providers working on host memory.
    data_transfer: DataTransfer | None = None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = self.parse_options(options or {})

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

    def rewrite_partition(self, graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
        """Provider-specific fusions among the nodes assigned to it (optimization level ALL).

        May replace nodes of ``nodes`` in ``graph`` by others; returns the nodes it owns after.
        """
        return nodes

    def wrap_plan(self, plan: Any) -> Any:
        """The session's compiled plan as this provider wants it run (CUDA graphs, say); default: as is."""
        return plan


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
