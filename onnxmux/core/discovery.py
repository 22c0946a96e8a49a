"""Finding execution providers through the ``onnxmux.providers`` entry-point group.

Built-in providers are registered by this project's own pyproject.toml, exactly as a
vendor's package registers its own. Entry points are loaded on first use, not at import
of onnxmux, and a provider that fails to import is reported as unavailable, never fatal.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import metadata

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import ExecutionProvider, api_problem, class_transfer_problem

GROUP = "onnxmux.providers"
#: Set to 1 to load only the providers shipped with onnxmux itself.
DISABLE_PLUGINS_ENV = "ONNXMUX_DISABLE_PLUGINS"
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


def discover() -> dict[str, ProviderEntry]:
    """Every provider found, by name: entry points, then providers registered from code."""
    return {**_from_entry_points(), **_registered}


@functools.lru_cache(maxsize=1)
def _from_entry_points() -> dict[str, ProviderEntry]:
    only_builtin = os.environ.get(DISABLE_PLUGINS_ENV, "") not in ("", "0")
    found: dict[str, ProviderEntry] = {}
    for ep in metadata.entry_points(group=GROUP):
        if only_builtin and not ep.value.startswith("onnxmux."):
            continue
        found.setdefault(ep.name, _load(ep))
    if "CPUExecutionProvider" not in found:  # running from a source tree that was never installed
        from onnxmux.providers.cpu import CPUExecutionProvider

        found["CPUExecutionProvider"] = ProviderEntry("CPUExecutionProvider", CPUExecutionProvider)
    return found


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
    """The provider called ``name`` or having it as an alias (case-insensitive)."""
    entries = discover()
    if name in entries:
        return entries[name]
    lowered = name.lower()
    for entry in entries.values():
        if entry.name.lower() == lowered or lowered in entry.aliases:
            return entry
    return None


def get_all_providers() -> list[str]:
    """Every provider name onnxmux knows of, installed or not."""
    names = list(KNOWN_PROVIDERS)
    names += [n for n in discover() if n not in names]
    return names


def get_available_providers() -> list[str]:
    """The providers that can run on this machine, in priority order (CPU last)."""
    names = [e.name for e in discover().values() if e.unavailable_reason() is None]
    order = {n: i for i, n in enumerate(KNOWN_PROVIDERS)}
    return sorted(names, key=lambda n: order.get(n, -1))
