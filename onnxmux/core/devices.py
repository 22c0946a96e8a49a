"""Naming devices as onnxruntime's Python API does (``device_type``, ``device_id``) and finding the
provider whose data transfer moves values there.

No provider is known by name: ``("opencl", 0)`` resolves to whichever provider declares the
device ``opencl:0``, among the session's providers first, then among every available provider
found by discovery (instantiated once with default options, or with ``device_id`` when its
class accepts that option and declares another index by default).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from onnxmux.core import discovery
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.provider import HOST, DataTransfer, ExecutionProvider


@dataclass(frozen=True)
class Device:
    """Where a value lives: ``name`` is a provider's device string (``cpu``, ``opencl:0``...)."""

    name: str
    transfer: DataTransfer | None = None
    provider: ExecutionProvider | None = None

    @property
    def type(self) -> str:
        """The device type as onnxruntime spells it (``cpu``, ``cuda``, ``opencl``)."""
        return self.name.split(":", 1)[0].lower()

    @property
    def id(self) -> int:
        """The device index (0 for the host)."""
        _, _, index = self.name.partition(":")
        return int(index) if index.isdigit() else 0

    def to_device(self, array: Any) -> Any:
        """A host array as this device holds it."""
        return array if self.transfer is None else self.transfer.to_device(array)

    def to_host(self, value: Any) -> Any:
        """A value of this device as a host array."""
        return value if self.transfer is None else self.transfer.to_host(value)


CPU = Device(HOST)

_instances: dict[str, ExecutionProvider] = {}
_lock = threading.Lock()


def resolve(device_type: str, device_id: int = 0, providers: Sequence[ExecutionProvider] = ()) -> Device:
    """The Device named by onnxruntime's ``(device_type, device_id)``; InvalidArgument if none holds it."""
    if not isinstance(device_type, str):
        raise InvalidArgument(f"device_type must be a string such as 'cpu', got {device_type!r}")
    kind = device_type.lower()
    if kind == HOST:
        return CPU
    target = f"{kind}:{int(device_id)}"
    for provider in providers:
        if _device_of(provider) == target and provider.data_transfer is not None:
            return Device(target, provider.data_transfer, provider)
    provider = _shared_provider(kind, int(device_id), target)
    if provider is None:
        raise InvalidArgument(
            f"Unsupported device type: {device_type} (device '{target}'): no available provider declares it; "
            f"devices here: {', '.join(known_devices(providers))}"
        )
    return Device(target, provider.data_transfer, provider)


def device_of(name: str, providers: Sequence[ExecutionProvider] = ()) -> Device:
    """The Device of a device string such as ``opencl:0`` (``cpu`` for the host)."""
    kind, _, index = name.partition(":")
    return resolve(kind, int(index) if index.isdigit() else 0, providers)


def known_devices(providers: Sequence[ExecutionProvider] = ()) -> list[str]:
    """Every device string a value may be placed on here."""
    names = {HOST, *(_device_of(p) for p in providers)}
    for entry in discovery.discover().values():
        if entry.cls is not None and entry.unavailable_reason() is None:
            names.add(entry.cls.device)
    return sorted(names)


def _device_of(provider: ExecutionProvider) -> str:
    return str(provider.device).lower()


def _shared_provider(kind: str, index: int, target: str) -> ExecutionProvider | None:
    """A process-wide instance of the available provider holding ``target``, made on first use."""
    with _lock:
        if target in _instances:
            return _instances[target]
        for entry in discovery.discover().values():
            cls = entry.cls
            if cls is None or str(cls.device).split(":", 1)[0].lower() != kind or entry.unavailable_reason():
                continue
            for make in _constructors(cls, index, target):
                provider = make()
                if provider is not None and _device_of(provider) == target and provider.data_transfer is not None:
                    _instances[target] = provider
                    return provider
    return None


def _constructors(cls: type[ExecutionProvider], index: int, target: str) -> list[Callable[[], Any]]:
    makers: list[Callable[[], Any]] = []
    if str(cls.device).lower() == target:
        makers.append(lambda: _try(cls, {}))
    if "device_id" in cls.option_types:
        makers.append(lambda: _try(cls, {"device_id": index}))
    return makers


def _try(cls: type[ExecutionProvider], options: dict[str, Any]) -> ExecutionProvider | None:
    try:
        return cls(options)
    except Exception:  # a provider that cannot start here simply does not hold the device
        return None
