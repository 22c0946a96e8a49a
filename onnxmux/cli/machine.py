"""What a report says about the machine it ran on: a label, the platform, and package versions."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any

from onnxmux.core import discovery


def machine_info(label: str | None) -> dict[str, Any]:
    """The machine's label (the CI matrix label; the host name by default), platform and core versions."""
    return {
        "machine": label or platform.node() or "unknown",
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "versions": {name: _version(name) for name in ("onnxmux", "onnx", "numpy")},
    }


def sdk_versions(entry: discovery.ProviderEntry) -> dict[str, str]:
    """The installed versions of the packages a provider runs on: an onnxmux extra's requirements for a
    built-in provider, the provider's own distribution for a plugin."""
    module = entry.cls.__module__ if entry.cls is not None else ""
    if module.startswith("onnxmux."):
        extra = discovery.INSTALL_EXTRAS.get(entry.name)
        names = _extra_requirements(extra) if extra else []
    else:
        names = metadata.packages_distributions().get(module.split(".")[0], [])
    return {name: version for name in names if (version := _version(name)) is not None}


def _extra_requirements(extra: str) -> list[str]:
    requirements = metadata.metadata("onnxmux").get_all("Requires-Dist") or []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in requirements if marker.search(r)]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
