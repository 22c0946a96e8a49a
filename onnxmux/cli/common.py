"""Pieces shared by the sub-commands: provider lists, random inputs, argument types, warnings."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
from rich.console import Console

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


def random_input(arg: NodeArg, rng: np.random.Generator, shape: Sequence[int] | None = None) -> np.ndarray:
    """A random tensor of the declared type, of ``shape`` (default: the declared shape, unknown dims 1)."""
    match = re.fullmatch(r"tensor\((\w+)\)", arg.type)
    dtype = _DTYPES.get(match.group(1)) if match else None
    if dtype is None:
        raise InvalidArgument(f"input '{arg.name}' has type {arg.type}: give it with --input")
    if shape is None:
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


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def warn(command: str, message: str) -> None:
    """One warning line on stderr: ``onnxmux COMMAND: warning: MESSAGE``."""
    print(f"onnxmux {command}: warning: {message}", file=sys.stderr)


def wide_console() -> Console:
    """A console for tables; output that is not a terminal (CI logs, pipes) gets room for wide tables
    instead of rich's 80 columns, so names and numbers are never cut."""
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=160)


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Show each warning raised inside as one ``onnxmux COMMAND: warning: ...`` line, without
    Python's category and source line."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *rest: warn(command, str(message))
        yield
