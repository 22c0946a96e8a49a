"""``OpenCLExecutionProvider``: kernels in OpenCL C on any OpenCL 1.2+ device (GPU or CPU).

pyopencl is imported only when the provider is instantiated or its availability is checked:
provider discovery imports this module on every machine, OpenCL or not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.provider import KernelProvider
from onnxmux.core.registry import KernelDef
from onnxmux.providers.opencl import conv, elementwise, layout, matmul, normalization, pool, reduce  # noqa: F401
from onnxmux.providers.opencl.common import C_TYPES, FLOAT16, FLOAT64, MAX_RANK, REGISTRY


def _index_or_name(value: Any) -> int | str:
    """An index (an int, or a string of digits) or a name substring."""
    if isinstance(value, bool):
        raise ValueError("expected an index or a name")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("an index cannot be negative")
        return value
    text = str(value).strip()
    if not text:
        raise ValueError("expected an index or a name")
    return int(text) if text.isdigit() else text


def _device_type(value: Any) -> str:
    """GPU, CPU or ALL (any case)."""
    text = str(value).strip().upper()
    if text not in ("GPU", "CPU", "ALL"):
        raise ValueError("expected GPU, CPU or ALL")
    return text


class OpenCLExecutionProvider(KernelProvider):
    """Runs nodes as OpenCL kernels; tensors stay in device buffers between OpenCL nodes.

    Options: ``platform`` (index or name substring), ``device`` (index or name substring,
    among the platform's devices with GPUs first), ``device_type`` (``GPU``, ``CPU`` or
    ``ALL``, the default). Without options the first GPU is used, or the first device.
    """

    name = "OpenCLExecutionProvider"
    aliases = ("opencl",)
    device = "opencl:0"
    option_types = {"platform": _index_or_name, "device": _index_or_name, "device_type": _device_type}
    registry = REGISTRY

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        from onnxmux.providers.opencl.device import OpenCLTransfer, runtime_for, select_device

        chosen = select_device(
            self.options.get("platform"), self.options.get("device"), self.options.get("device_type", "ALL")
        )
        #: The kernels' ``xp``: context, queue, program cache and memory pool of the device.
        self.xp = runtime_for(chosen)
        self.data_transfer = OpenCLTransfer(self.xp)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why the provider cannot run here: pyopencl missing, or no OpenCL platform or device."""
        try:
            import pyopencl as cl
        except ImportError as exc:
            return f"pyopencl is not installed ({exc}); install onnxmux[opencl]"
        try:
            platforms = cl.get_platforms()
        except cl.Error as exc:
            return f"no OpenCL platform is installed ({exc})"
        for platform in platforms:
            try:
                if platform.get_devices():
                    return None
            except cl.Error:
                continue
        return "the OpenCL platforms have no devices"

    def kernel_for(self, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
        """The registry's kernel, after the checks every OpenCL kernel shares.

        Every input and output must be a tensor of a type OpenCL buffers hold, of rank at most
        ``MAX_RANK``; float64 needs ``cl_khr_fp64`` and float16 ``cl_khr_fp16`` on the device.
        """
        for info in ctx.inputs + ctx.outputs:
            if info is None:
                continue
            if info.kind != "tensor":
                return None, f"the OpenCL provider holds tensors only, not {info.kind} values"
            dtype = None if info.dtype is None else np.dtype(info.dtype)
            if dtype not in C_TYPES:
                return None, f"OpenCL kernels do not take {dtype if dtype is not None else 'untyped'} tensors"
            if dtype == FLOAT64 and not self.xp.fp64:
                return None, "the OpenCL device lacks cl_khr_fp64 (float64)"
            if dtype == FLOAT16 and not self.xp.fp16:
                return None, "the OpenCL device lacks cl_khr_fp16 (float16)"
            if info.shape is not None and len(info.shape) > MAX_RANK:
                return None, f"OpenCL kernels take tensors of rank {MAX_RANK} at most"
        if ctx.implicit_inputs:
            return None, "the OpenCL provider runs no subgraphs"
        return super().kernel_for(ctx)
