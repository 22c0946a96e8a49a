"""Providers used by the tests to check partitioning and device copies.

``TestDeviceProvider`` keeps its arrays wrapped in ``DeviceArray``: a kernel that receives a
host array, or a host kernel that receives a wrapped one, fails loudly, so a missing or extra
copy cannot go unnoticed. ``CompileTestProvider`` is compile-based: it claims groups of nodes
and runs each extracted subgraph in an inner onnxmux session on the CPU.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnx_ir as ir
import pytest

import onnxmux
from onnxmux.core import discovery
from onnxmux.core.registry import KernelDef, KernelRegistry
from onnxmux.providers.cpu.registry import REGISTRY as CPU_REGISTRY


class DeviceArray:
    """An array that lives on the test device; numpy refuses to use it directly."""

    __array_ufunc__ = None

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        """The held array's shape (device arrays describe themselves without a copy)."""
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        """The held array's element type."""
        return self.array.dtype

    @property
    def nbytes(self) -> int:
        """The held array's size in bytes."""
        return self.array.nbytes

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("a test-device array reached host code without a copy")


class DeviceTransfer(onnxmux.DataTransfer):
    """Wraps on the way to the test device, unwraps on the way back; checks both directions."""

    array_type = DeviceArray

    def describe(self, value: DeviceArray) -> tuple[np.dtype, tuple[int, ...]]:
        return value.array.dtype, value.array.shape

    def to_device(self, value: Any) -> Any:
        assert not isinstance(value, DeviceArray), "copy to the test device of a value already there"
        return None if value is None else DeviceArray(np.asarray(value))

    def to_host(self, value: Any) -> Any:
        assert value is None or isinstance(value, DeviceArray), f"copy to host of a host value ({type(value).__name__})"
        return None if value is None else value.array


def _on_device(factory: Callable) -> Callable:
    """A CPU kernel factory turned into a test-device one: unwrap inputs, wrap outputs."""

    def device_factory(ctx, xp):
        run = factory(ctx, xp)

        def device_run(*args):
            for arg in args:
                if arg is not None and not isinstance(arg, DeviceArray):
                    raise AssertionError(f"{ctx.describe()} received a host {type(arg).__name__} on the test device")
            result = run(*[a.array if a is not None else None for a in args])
            if type(result) is tuple:
                return tuple(None if r is None else DeviceArray(np.asarray(r)) for r in result)
            return DeviceArray(np.asarray(result))

        return device_run

    return device_factory


def _tensors_only(ctx) -> str | None:
    types = [t for t in ctx.inputs + ctx.outputs if t is not None]
    if any(t.kind != "tensor" for t in types):
        return "the test device holds tensors only"
    if ctx.implicit_inputs or any(isinstance(v, (ir.Graph, list)) and v and isinstance(v[0] if isinstance(v, list) else v, ir.Graph) for v in ctx.attrs.values()):
        return "the test device runs no subgraphs"
    return None


def _device_registry(claim: Callable[[str], bool]) -> KernelRegistry:
    registry = KernelRegistry()
    for domain, op_type in CPU_REGISTRY.ops():
        if not claim(op_type):
            continue
        for since in CPU_REGISTRY.versions(domain, op_type):
            kernel = CPU_REGISTRY.lookup(domain, op_type, since)
            registry.add(KernelDef(op_type, domain, since, _on_device(kernel.factory), _tensors_only))
    return registry


class TestDeviceProvider(onnxmux.KernelProvider):
    """Claims an arbitrary half of the operators (even-length names), so partitions interleave."""

    __test__ = False
    name = "TestDeviceExecutionProvider"
    aliases = ("test-device",)
    device = "testdev:0"
    data_transfer = DeviceTransfer()
    registry = _device_registry(lambda op: len(op) % 2 == 0)


class HeavyOpsDeviceProvider(TestDeviceProvider):
    """Claims only Conv, MatMul and Gemm, on its own device."""

    name = "HeavyOpsDeviceExecutionProvider"
    aliases = ("heavy-device",)
    device = "heavydev:0"
    registry = _device_registry(lambda op: op in {"Conv", "MatMul", "Gemm"})


COMPILABLE = {
    "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs",
    "MatMul", "Gemm", "Conv", "Reshape", "Transpose", "Concat", "Softmax", "Identity", "Cast",
}


class CompileTestProvider(onnxmux.CompileProvider):
    """Claims tensor-only nodes of common ops as one group; compiles each piece into a CPU session."""

    __test__ = False
    name = "CompileTestExecutionProvider"
    aliases = ("compile-test",)
    device = "cpu"
    compiled: list[Any] = []

    def claim(self, graph: ir.Graph, candidates: Sequence[ir.Node]) -> list[list[ir.Node]]:
        group = [n for n in candidates if n.op_type in COMPILABLE and n.domain in ("", "ai.onnx") and _typed_tensors(n)]
        return [group] if group else []

    def compile(self, subgraph: onnxmux.Subgraph) -> Callable[..., tuple]:
        options = onnxmux.SessionOptions()
        options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxmux.InferenceSession(subgraph.model.SerializeToString(), options, providers=["cpu"])
        names = subgraph.inputs
        type(self).compiled.append(subgraph)

        def run(*values):
            return tuple(session.run(None, dict(zip(names, values))))

        return run

    def explain(self, node: ir.Node) -> str:
        return "op not in the compile-test set" if node.op_type not in COMPILABLE else "non-tensor or untyped values"


def _typed_tensors(node: ir.Node) -> bool:
    values = [v for v in list(node.inputs) + list(node.outputs) if v is not None and v.name]
    return all(isinstance(v.type, ir.TensorType) and v.shape is not None for v in values)


def register_all() -> None:
    """Make the test providers selectable by name."""
    for cls in (TestDeviceProvider, HeavyOpsDeviceProvider, CompileTestProvider):
        onnxmux.register_provider(cls)


@pytest.fixture
def forget_registered_providers():
    """Drops the providers a test registers afterwards, so later tests never see them."""
    saved = dict(discovery._registered)
    yield
    discovery._registered.clear()
    discovery._registered.update(saved)
