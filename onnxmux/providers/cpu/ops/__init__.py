"""CPU kernels, one module per operator family; each registers itself with ``registry.op``."""
