"""Defer SymPy, which onnx-ir imports at start-up but needs only for arithmetic on symbolic dims.

SymPy is about a third of the memory and time of ``import onnxmux``, and loading and running
models never does symbolic-dim arithmetic unless a rewrite asks for it. Before onnx-ir is first
imported, ``defer()`` puts stand-ins for ``sympy`` and ``onnx_ir._symbolic_shapes`` (the one
onnx-ir module that uses SymPy at import) in ``sys.modules``: each imports the real module on
its first attribute access and from then on behaves as it. Nothing is deferred when either
module is already imported, or cannot be found.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

#: The modules deferred, in the order they must be installed.
DEFERRED = ("sympy", "onnx_ir._symbolic_shapes")

_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """A stand-in module that imports the real one on first use and takes over its namespace."""

    def __getattr__(self, attr: str) -> Any:
        # Called only for names not in the module's dict: ``__spec__``, which is, is all that
        # ``import name`` of an imported module reads; ``__path__`` (a submodule import) loads.
        return getattr(self._load(), attr)

    def _load(self) -> types.ModuleType:
        name = self.__name__
        with _lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
                real = importlib.import_module(name)
                vars(self).update(vars(real))
            return sys.modules[name]


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec, found without importing it or its parent package."""
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name)
    parent_spec = importlib.util.find_spec(parent)
    if parent_spec is None or parent_spec.submodule_search_locations is None:
        return None
    return importlib.machinery.PathFinder.find_spec(name, list(parent_spec.submodule_search_locations))


def defer() -> None:
    """Install the stand-ins, unless onnx-ir or SymPy is already imported."""
    if any(name in sys.modules for name in (*DEFERRED, "onnx_ir")):
        return
    specs = [_spec(name) for name in DEFERRED]
    if any(spec is None for spec in specs):
        return
    for name, spec in zip(DEFERRED, specs):
        module = _Deferred(name)
        module.__spec__ = spec
        sys.modules[name] = module
