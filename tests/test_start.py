"""A light start: what ``import onnxmux`` loads, the deferred SymPy, the collector around creation."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

import onnxmux
from helpers import affine_relu_model


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_import_leaves_heavy_modules_unloaded() -> None:
    heavy = ["scipy", "sympy.core", "PIL", "threadpoolctl", "rich", "onnx.reference"]
    out = _run(f"import sys, onnxmux; print([m for m in {heavy!r} if m in sys.modules])")
    assert out == "[]"


def test_first_session_does_not_load_scipy_or_sympy() -> None:
    code = (
        "import sys, numpy as np, onnxmux\n"
        "from helpers import affine_relu_model\n"
        "s = onnxmux.InferenceSession(affine_relu_model().SerializeToString())\n"
        "s.run(None, {'x': np.ones((2, 3), np.float32)})\n"
        "print([m for m in ('scipy', 'sympy.core') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=__file__.rsplit("/", 1)[0]
    ).stdout.strip()
    assert out == "[]"


def test_deferred_sympy_loads_on_use() -> None:
    out = _run(
        "import sys, onnxmux, onnx_ir\n"
        "print(onnx_ir.SymbolicDim('n') * 2)\n"
        "import sympy.core\n"
        "from sympy import Symbol\n"
        "print(Symbol('x') + 1, type(sys.modules['sympy']).__name__)"
    )
    assert out.splitlines() == ["2*n", "x + 1 module"]


def test_collector_is_restored_after_creation() -> None:
    assert gc.isenabled()
    onnxmux.InferenceSession(affine_relu_model().SerializeToString())
    assert gc.isenabled()
    with pytest.raises(onnxmux.InvalidGraph):
        onnxmux.InferenceSession(b"not a model")
    assert gc.isenabled()
    gc.disable()
    try:
        onnxmux.InferenceSession(affine_relu_model().SerializeToString())
        assert not gc.isenabled()
    finally:
        gc.enable()
