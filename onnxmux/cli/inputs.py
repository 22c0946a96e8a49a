"""The inputs ``onnxmux run`` feeds: from .npy files, or random of a shape set by ``--shape`` and ``--dim``."""

from __future__ import annotations

import re

import numpy as np
from rich.table import Table

from onnxmux.cli.common import random_input
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.node_arg import NodeArg


def parse_assignments(items: list[str], flag: str, form: str) -> dict[str, str]:
    """``NAME=VALUE`` items of a repeatable flag, by name; a malformed item names the flag and the form."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InvalidArgument(f"{flag} '{item}' must be {form}")
        parsed[name] = value
    return parsed


def load_inputs(items: list[str]) -> dict[str, np.ndarray]:
    """``--input NAME=FILE.npy`` items, loaded."""
    feed = {}
    for name, path in parse_assignments(items, "--input", "NAME=FILE.npy").items():
        try:
            feed[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--input '{name}': cannot read '{path}': {exc}") from exc
    return feed


def parse_shapes(items: list[str]) -> dict[str, list[int]]:
    """``--shape NAME=1x3x224x224`` items as {input: dimensions}."""
    shapes = {}
    for name, text in parse_assignments(items, "--shape", "NAME=1x3x224x224").items():
        if not re.fullmatch(r"\d+(x\d+)*", text):
            raise InvalidArgument(f"--shape {name}={text}: the shape must be dimensions joined by x, e.g. 1x3x224x224")
        shapes[name] = [int(d) for d in text.split("x")]
    return shapes


def parse_dims(items: list[str]) -> dict[str, int]:
    """``--dim NAME=VALUE`` items as {symbolic dimension: value}."""
    dims = {}
    for name, value in parse_assignments(items, "--dim", "NAME=VALUE").items():
        if not value.isdigit():
            raise InvalidArgument(f"--dim {name}={value}: the value must be a non-negative integer")
        dims[name] = int(value)
    return dims


def random_feed(
    inputs: list[NodeArg], given: dict[str, np.ndarray], shapes: dict[str, list[int]], dims: dict[str, int], seed: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Random values for the inputs not ``given``, and notes on the dimensions that defaulted to 1."""
    names = {arg.name for arg in inputs}
    unknown = sorted((set(shapes) | set(given)) - names)
    if unknown:
        raise InvalidArgument(f"the model has no input {', '.join(map(repr, unknown))} (inputs: {', '.join(sorted(names))})")
    symbols = {d for arg in inputs for d in (arg.shape or []) if isinstance(d, str)}
    unused = sorted(set(dims) - symbols)
    if unused:
        raise InvalidArgument(f"--dim {unused[0]}: the model has no symbolic dimension of that name (it has: {', '.join(sorted(symbols)) or 'none'})")
    rng = np.random.default_rng(seed)
    feed, notes = dict(given), []
    for arg in inputs:
        if arg.name in feed:
            continue
        if arg.name in shapes:
            shape = _checked(arg, shapes[arg.name])
        else:
            shape = []
            for axis, d in enumerate(arg.shape or []):
                if isinstance(d, int) and d >= 0:
                    shape.append(d)
                elif isinstance(d, str) and d in dims:
                    shape.append(dims[d])
                else:
                    shape.append(1)
                    label = f"'{d}'" if isinstance(d, str) else "unknown"
                    notes.append(f"input '{arg.name}' axis {axis}: {label} dimension set to 1 (--dim or --shape to change)")
        feed[arg.name] = random_input(arg, rng, shape)
    return feed, notes


def inputs_table(inputs: list[NodeArg], feed: dict[str, np.ndarray], given: dict[str, np.ndarray]) -> Table:
    """The shape and dtype of every input fed, and whether it came from a file or is random."""
    table = Table(title="inputs")
    for column in ("input", "shape", "dtype", "from"):
        table.add_column(column)
    for arg in inputs:
        value = np.asarray(feed[arg.name])
        table.add_row(arg.name, str(list(value.shape)), str(value.dtype), "file" if arg.name in given else "random")
    return table


def _checked(arg: NodeArg, shape: list[int]) -> list[int]:
    declared = arg.shape
    if declared is not None:
        if len(declared) != len(shape):
            raise InvalidArgument(f"--shape {arg.name}: {len(shape)} dimensions given, the input has {len(declared)} ({_fmt(declared)})")
        for axis, (want, got) in enumerate(zip(declared, shape)):
            if isinstance(want, int) and want >= 0 and want != got:
                raise InvalidArgument(f"--shape {arg.name}: axis {axis} is {want} in the model, {got} given")
    return shape


def _fmt(shape: list) -> str:
    return "x".join(str(d) if d is not None else "?" for d in shape)
