"""A device-resident kernel provider: values live in (simulated) Acme device memory.

``AcmeTensor`` stands for a buffer on the accelerator; here it wraps a numpy array that host
code must not read directly. The ``DataTransfer`` uploads and downloads, copies between Acme
devices without the host, and tells onnxmux the class, dtype and shape of its tensors so the
runtime can check what the kernels return.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux import ep


class AcmeTensor:
    """A tensor in Acme device memory (a numpy array stands in for the device buffer)."""

    __array_ufunc__ = None  # numpy must not compute on it as if it were host memory

    def __init__(self, buffer: np.ndarray, device_id: int = 0) -> None:
        self.buffer = buffer
        self.device_id = device_id


class AcmeTransfer(ep.DataTransfer):
    """Host <-> Acme copies, and Acme -> Acme copies that skip the host."""

    array_type = AcmeTensor

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id

    def to_device(self, value: np.ndarray) -> AcmeTensor:
        # The host array may be read-only, 0-d, empty or an ml_dtypes type: copy, never alias.
        return AcmeTensor(np.array(value, copy=True), self.device_id)

    def to_host(self, value: AcmeTensor) -> np.ndarray:
        return np.array(value.buffer, copy=True)

    def describe(self, value: AcmeTensor) -> tuple[np.dtype, tuple[int, ...]]:
        return value.buffer.dtype, value.buffer.shape

    def copier(self, target_device: str, target: ep.DataTransfer) -> Callable[[Any], Any] | None:
        if not isinstance(target, AcmeTransfer):
            return None  # another vendor's device: through the host
        return lambda value: AcmeTensor(value.buffer.copy(), target.device_id)


REGISTRY = ep.KernelRegistry()
op = REGISTRY.register


def _float32(ctx: ep.NodeContext) -> str | None:
    if any(info is not None and info.dtype != np.float32 for info in ctx.inputs):
        return "Acme computes in float32 only"
    return None


def _on_acme(compute: Callable[..., np.ndarray]) -> Callable[..., AcmeTensor]:
    """A device kernel: reads device buffers, writes a new device buffer."""
    return lambda *args: AcmeTensor(np.asarray(compute(*[a.buffer for a in args])))


@op("Relu", 6, 13, 14, supports=_float32)
def relu(ctx, xp):
    return _on_acme(lambda x: np.maximum(x, np.float32(0)))


@op("Add", 7, 13, 14, supports=_float32)
def add(ctx, xp):
    return _on_acme(np.add)


@op("MatMul", 9, 13, supports=_float32)
def matmul(ctx, xp):
    return _on_acme(np.matmul)


class AcmeDeviceExecutionProvider(ep.KernelProvider):
    """Runs Relu, Add and MatMul in float32 on Acme device memory."""

    name = "AcmeDeviceExecutionProvider"
    aliases = ("acme-device",)
    device = "acme:0"
    api_version = ep.API_VERSION
    data_transfer = AcmeTransfer(0)
    registry = REGISTRY
