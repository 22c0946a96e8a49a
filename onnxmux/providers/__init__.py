"""The execution providers shipped with onnxmux, each registered through an entry point."""
