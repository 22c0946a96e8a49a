"""Run a program written for onnxruntime on onnxmux, unchanged.

``python -m onnxmux.compat SCRIPT [ARGS]`` (or ``-m MODULE [ARGS]``) makes ``import onnxruntime``
and every ``onnxruntime.<sub.module>`` import resolve to onnxmux's module of the same path,
then runs the program as ``__main__``. ``install()`` does the same from code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import runpy
import sys
from types import ModuleType
from typing import Sequence

ALIAS = "onnxruntime"
TARGET = "onnxmux"


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``onnxruntime[.x.y]`` with the already-imported ``onnxmux[.x.y]`` module."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = TARGET + fullname[len(ALIAS) :]
        try:
            found = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=found.submodule_search_locations is not None)

    def __init__(self) -> None:
        self._specs: dict[str, tuple] = {}

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(TARGET + spec.name[len(ALIAS) :])
        self._specs[module.__name__] = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when onnxmux imported it; the import system gave it the alias's spec,
        which is put back so the module keeps its own identity."""
        module.__spec__, module.__loader__ = self._specs[module.__name__]


def install() -> None:
    """Make ``onnxruntime`` and its submodules resolve to onnxmux for the rest of the process."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        del sys.modules[name]  # a real onnxruntime imported earlier must not answer later imports
    importlib.import_module(ALIAS)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m onnxmux.compat SCRIPT [ARGS]`` or ``python -m onnxmux.compat -m MODULE [ARGS]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    install()
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        sys.path.insert(0, str(__import__("pathlib").Path(args[0]).resolve().parent))
        runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
