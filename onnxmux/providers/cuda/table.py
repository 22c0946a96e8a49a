"""The CUDA provider's kernel table: the CPU provider's kernels reused through ``xp`` (CuPy
mirrors numpy's API), overridden by hand-written CuPy kernels where numpy-style code would make
many passes over memory, and the checks every CUDA node passes first.

The table is built by ``build_registry``; ``cupy_kernels=False`` leaves the hand-written
kernels out, which is how tests run the shared part of the table on numpy without a GPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.core.provider import KernelProvider
from onnxmux.core.registry import KernelDef, KernelRegistry

#: CPU kernel modules whose operators stay on the host: non-tensor values (sequences, maps,
#: optionals, strings), subgraphs, host-side random generators and the classic-ML operators.
HOST_ONLY_MODULES = frozenset({
    "control_flow",
    "image_decode",
    "ml_encoding",
    "ml_linear",
    "ml_trees",
    "optional",
    "random",
    "sequence",
    "strings",
    "training",
})
#: Single operators of the shared modules that compute on the host by design (dictionary
#: lookups, variable-length host loops); the partitioner leaves them to the CPU.
HOST_ONLY_OPS = frozenset({
    "TfIdfVectorizer",
    "NonMaxSuppression",
    "Unique",
    "StringNormalizer",
    "RegexFullMatch",
})
_REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
#: Inputs the shared kernels read as host values (shapes, axes, counts), by ONNX op type: on the
#: CUDA provider they stay in host memory, so a constant one is never uploaded and no run reads
#: it back from the GPU (which would synchronize the run and prevent CUDA-graph capture).
HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "Tile": (1, 2),
    "ConstantOfShape": (0,), "Pad": (1, 3), "CenterCropPad": (1,), "Slice": (1, 2, 3, 4), "TopK": (1,),
    "OneHot": (1,), "CumSum": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    **{op_type: (1,) for op_type in _REDUCTIONS},
}
#: Element types CuPy arrays hold (no strings, bfloat16, float8 or 4-bit types).
DEVICE_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
        np.float16, np.float32, np.float64, np.complex64, np.complex128,
    )
)


def _shared(kernel: KernelDef) -> bool:
    module = kernel.factory.__module__.rsplit(".", 1)[-1]
    return module not in HOST_ONLY_MODULES and kernel.op_type not in HOST_ONLY_OPS


def build_registry(cupy_kernels: bool = True) -> KernelRegistry:
    """The CUDA kernel table: shared CPU kernels, then (when asked) the CuPy kernels over them."""
    from onnxmux.providers.cpu import CPUExecutionProvider

    registry = KernelRegistry()
    cpu = CPUExecutionProvider.registry
    for domain, op_type in cpu.ops():
        for since in cpu.versions(domain, op_type):
            kernel = cpu.lookup(domain, op_type, since)
            if kernel is not None and kernel.since == since and _shared(kernel):
                host = HOST_INPUTS.get(op_type, ()) if domain == "" else ()
                registry.add(dataclasses.replace(kernel, host_inputs=host) if host else kernel)
    if cupy_kernels:
        from onnxmux.providers.cuda.kernels import CUPY_REGISTRY

        for domain, op_type in CUPY_REGISTRY.ops():
            for since in CUPY_REGISTRY.versions(domain, op_type):
                registry.add(CUPY_REGISTRY.lookup(domain, op_type, since))
    return registry


def node_reason(ctx: NodeContext) -> str | None:
    """Why no CUDA kernel can take this node whatever its op: None when its values fit the GPU."""
    if ctx.implicit_inputs:
        return "the CUDA provider runs no subgraphs"
    for info in ctx.inputs + ctx.outputs:
        if info is None:
            continue
        if info.kind != "tensor":
            return f"the CUDA provider holds tensors only, not {info.kind} values"
        if info.dtype is None or np.dtype(info.dtype) not in DEVICE_DTYPES:
            return f"CuPy arrays cannot hold {info.dtype if info.dtype is not None else 'untyped'} tensors"
    return None


def select_kernel(provider: KernelProvider, ctx: NodeContext) -> tuple[KernelDef | None, str | None]:
    """The table's kernel for ``ctx`` after the checks every CUDA node shares, or None and why."""
    reason = node_reason(ctx)
    if reason is not None:
        return None, reason
    return KernelProvider.kernel_for(provider, ctx)


def run_shared(ctx: NodeContext, xp: Any) -> Any:
    """The CPU provider's kernel for ``ctx``, built with ``xp``: a CuPy kernel's general case."""
    from onnxmux.providers.cpu import CPUExecutionProvider

    kernel = CPUExecutionProvider.registry.lookup(ctx.domain, ctx.op_type, ctx.opset)
    if kernel is None:
        raise ctx.error("no shared kernel for this node")
    return kernel.factory(ctx, xp)
