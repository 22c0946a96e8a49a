"""Finding execution providers through the ``onnxmux.providers`` entry-point group.

Built-in providers are registered by this project's own pyproject.toml, exactly as a
vendor's package registers its own. A provider's entry point is imported only when it is
asked for by name (a session imports the providers it names, nothing else); listing every
provider imports them all, each within a time limit. A provider that fails to import is
reported as unavailable, never fatal.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from dataclasses import dataclass
from importlib import metadata

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import ExecutionProvider, api_problem, class_transfer_problem

GROUP = "onnxmux.providers"
#: Set to 1/true/yes to load only the providers shipped with onnxmux itself (0/false/no: all).
DISABLE_PLUGINS_ENV = "ONNXMUX_DISABLE_PLUGINS"
#: Seconds listing waits for one plugin's import before reporting it as unavailable.
IMPORT_TIMEOUT_ENV = "ONNXMUX_PLUGIN_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT_S = 10.0
#: onnxruntime's provider names, listed by get_all_providers() even when not installed.
#: How ``unavailable_reason`` begins when a provider's own availability check raised.
CHECK_FAILED = "availability check failed"
KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "OpenCLExecutionProvider",
    "CPUExecutionProvider",
)
#: The onnxmux extra that installs what each known provider needs (``pip install "onnxmux[cuda]"``).
INSTALL_EXTRAS = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "OpenVINOExecutionProvider": "openvino",
    "OpenCLExecutionProvider": "opencl",
}


@dataclass(frozen=True)
class ProviderEntry:
    """A discovered provider: its class, or the reason it could not be loaded."""

    name: str
    cls: type[ExecutionProvider] | None
    load_error: str | None = None

    @property
    def aliases(self) -> tuple[str, ...]:
        """Short names the provider also answers to."""
        return self.cls.aliases if self.cls else ()

    def unavailable_reason(self) -> str | None:
        """None when the provider can run here, else why not."""
        if self.cls is None:
            return self.load_error
        problem = api_problem(self.cls)
        if problem is not None:
            return problem
        try:
            return self.cls.unavailable_reason()
        except Exception as exc:  # a plugin's own check must not break the runtime
            return f"{CHECK_FAILED}: {type(exc).__name__}: {exc}"


#: Providers registered from code with ``register_provider`` (tests, notebooks, embedding apps).
_registered: dict[str, ProviderEntry] = {}


def register_provider(cls: type[ExecutionProvider]) -> None:
    """Make a provider class selectable by name without an entry point."""
    if not (isinstance(cls, type) and issubclass(cls, ExecutionProvider)) or not cls.name:
        raise InvalidArgument(f"{cls!r} is not an ExecutionProvider subclass with a name")
    problem = class_transfer_problem(cls)
    if problem is not None:
        raise InvalidArgument(f"{cls.name} is refused: {problem}")
    _registered[cls.name] = ProviderEntry(cls.name, cls)


def plugins_disabled() -> bool:
    """Whether ONNXMUX_DISABLE_PLUGINS asks for the built-in providers only (a value it does not
    understand is warned about and ignored)."""
    value = os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value not in ("", "0", "false", "no"):
        warnings.warn(f"{DISABLE_PLUGINS_ENV}={value!r} is neither 1/true/yes nor 0/false/no; plugins stay enabled")
    return False


def discover(timeout: float | None = None) -> dict[str, ProviderEntry]:
    """Every provider found, by name, all imported: entry points, then providers registered
    from code. With ``timeout``, a plugin whose import takes longer is reported as unavailable."""
    return {name: _entry(name, timeout) for name in _names()}


def _names() -> list[str]:
    return [*_entry_points(), *(n for n in _registered if n not in _entry_points())]


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint | None]:
    """The providers' entry points by name, not imported (None: the built-in CPU provider)."""
    only_builtin = plugins_disabled()
    found: dict[str, metadata.EntryPoint | None] = {}
    for ep in metadata.entry_points(group=GROUP):
        if only_builtin and not ep.value.startswith("onnxmux."):
            continue
        found.setdefault(ep.name, ep)
    found.setdefault("CPUExecutionProvider", None)  # running from a source tree that was never installed
    return found


#: Entries whose import finished, by name.
_loaded: dict[str, ProviderEntry] = {}


def _entry(name: str, timeout: float | None = None) -> ProviderEntry:
    """The provider ``name``, importing its entry point on first use."""
    if name in _registered:
        return _registered[name]
    if name not in _loaded:
        ep = _entry_points()[name]
        if ep is None:
            from onnxmux.providers.cpu import CPUExecutionProvider

            _loaded[name] = ProviderEntry(name, CPUExecutionProvider)
        elif timeout is None:
            _loaded[name] = _load(ep)
        else:
            return _load_within(ep, timeout)
    return _loaded[name]


def _load_within(ep: metadata.EntryPoint, timeout: float) -> ProviderEntry:
    """Import ``ep`` on a daemon thread; unavailable ("import timed out") if it takes over ``timeout`` s."""

    def target() -> None:
        _loaded[ep.name] = _load(ep)

    thread = threading.Thread(target=target, name=f"onnxmux-import-{ep.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if ep.name in _loaded:
        return _loaded[ep.name]
    return ProviderEntry(ep.name, None, f"import timed out after {timeout:g} s ({ep.value})")


def import_timeout() -> float:
    """The per-plugin import time limit of listings, from ONNXMUX_PLUGIN_IMPORT_TIMEOUT (seconds)."""
    text = os.environ.get(IMPORT_TIMEOUT_ENV, "")
    try:
        return float(text) if text else DEFAULT_IMPORT_TIMEOUT_S
    except ValueError:
        warnings.warn(f"{IMPORT_TIMEOUT_ENV}={text!r} is not a number of seconds; using {DEFAULT_IMPORT_TIMEOUT_S:g}")
        return DEFAULT_IMPORT_TIMEOUT_S


def _load(ep: metadata.EntryPoint) -> ProviderEntry:
    try:
        cls = ep.load()
    except Exception as exc:
        return ProviderEntry(ep.name, None, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
    if not (isinstance(cls, type) and issubclass(cls, ExecutionProvider)):
        return ProviderEntry(ep.name, None, f"{ep.value} is not an onnxmux ExecutionProvider class")
    problem = class_transfer_problem(cls)
    if problem is not None:
        return ProviderEntry(ep.name, None, f"{ep.value} is refused: {problem}")
    return ProviderEntry(ep.name, cls)


def find(name: str) -> ProviderEntry | None:
    """The provider called ``name`` or having it as an alias (case-insensitive).

    A provider's own name imports that provider only; an alias imports them all to read theirs.
    """
    lowered = name.lower()
    for known in _names():
        if known == name or known.lower() == lowered:
            return _entry(known)
    for entry in discover().values():
        if lowered in entry.aliases:
            return entry
    return None


def known_name(name: str) -> str | None:
    """The full name of a known onnxruntime provider given by full name or short name
    (``cuda``, ``tensorrt``), installed or not; None for other names."""
    lowered = name.lower()
    for known in KNOWN_PROVIDERS:
        if lowered in (known.lower(), known.lower().removesuffix("executionprovider")):
            return known
    return None


def not_installed_reason(name: str) -> str:
    """Why a known provider that no installed package provides cannot run, with the install command."""
    extra = INSTALL_EXTRAS.get(name)
    hint = f': pip install "onnxmux[{extra}]"' if extra else ""
    return f"not installed{hint}"


def get_all_providers() -> list[str]:
    """Every provider name onnxmux knows of, installed or not."""
    names = list(KNOWN_PROVIDERS)
    names += [n for n in _names() if n not in names]
    return names


def get_available_providers() -> list[str]:
    """The providers that can run on this machine, in priority order (CPU last)."""
    names = [e.name for e in discover().values() if e.unavailable_reason() is None]
    order = {n: i for i, n in enumerate(KNOWN_PROVIDERS)}
    return sorted(names, key=lambda n: order.get(n, -1))
