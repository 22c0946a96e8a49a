"""Example onnxmux providers: ``kernels`` is kernel-based, ``graph`` compile-based."""
