"""Example onnxmux providers: ``kernels`` is kernel-based, ``device`` kernel-based on device
memory, ``graph`` compile-based."""
