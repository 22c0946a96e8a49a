"""The CPU provider's kernel registry; ``op`` is the decorator its operator modules use."""

from onnxmux.core.registry import KernelRegistry

REGISTRY = KernelRegistry()
op = REGISTRY.register
