"""Pieces shared by the sub-commands: provider lists and random inputs for a session."""

from __future__ import annotations

import argparse
import re
from typing import Any, Sequence

import numpy as np

from onnxmux.core import discovery
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.node_arg import NodeArg


def provider_list(text: str | None) -> list[str] | None:
    """``a,b`` as a list of provider names (None when not given)."""
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def add_provider_option_argument(parser: argparse.ArgumentParser) -> None:
    """``--provider-option PROVIDER:KEY=VALUE``, repeatable."""
    parser.add_argument(
        "--provider-option", action="append", default=[], metavar="PROVIDER:KEY=VALUE",
        help="an option of one provider, e.g. openvino:device_type=CPU (repeatable)",
    )


def provider_options(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``PROVIDER:KEY=VALUE`` items as options per provider (by full name)."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (sep and eq and name.strip() and key.strip()):
            raise InvalidArgument(f"--provider-option '{item}' is not of the form PROVIDER:KEY=VALUE")
        entry = discovery.find(name.strip())
        if entry is None:
            raise InvalidArgument(f"--provider-option '{item}': unknown execution provider '{name.strip()}'")
        options.setdefault(entry.name, {})[key.strip()] = value
    return options


def provider_specs(text: str | None, items: Sequence[str]) -> list[Any] | None:
    """The ``providers`` argument of a session: names from ``--providers``, each with its
    ``--provider-option`` options; an option for a provider not in the list is an error."""
    names = provider_list(text) or (["cpu"] if items else None)
    options = provider_options(items)
    if names is None:
        return None
    specs: list[Any] = []
    for name in names:
        entry = discovery.find(name)
        given = options.pop(entry.name, None) if entry is not None else None
        specs.append((name, given) if given else name)
    if options:
        raise InvalidArgument(f"--provider-option for {', '.join(options)}, which is not in --providers")
    return specs


def random_input(arg: NodeArg, rng: np.random.Generator) -> np.ndarray:
    """A random tensor of the declared type; symbolic or unknown dims become 1."""
    match = re.fullmatch(r"tensor\((\w+)\)", arg.type)
    if not match:
        raise InvalidArgument(f"input '{arg.name}' has type {arg.type}: give it with --input")
    dtype = _DTYPES.get(match.group(1))
    if dtype is None:
        raise InvalidArgument(f"input '{arg.name}' has type {arg.type}: give it with --input")
    shape = [d if isinstance(d, int) and d >= 0 else 1 for d in (arg.shape or [])]
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 10, shape).astype(dtype)


_DTYPES = {
    name: np.dtype(name)
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
}
_DTYPES.update({"float": np.dtype("float32"), "double": np.dtype("float64")})
