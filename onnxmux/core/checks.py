"""Checks of what a provider's kernel or compiled subgraph returns, against the static types.

A check is built once per step at session creation (a closure over the expected count,
element types, static dimensions and device array class) and wraps the step's function, so
the run path does no lookups. The compiler attaches one to every step whose outputs cross to
another device or are graph outputs, and to every step under ``session.check_provider_outputs``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.errors import ProviderError
from onnxmux.core.provider import DataTransfer
from onnxmux.core.types import TypeInfo, dtype_name

#: Session config entry: "1" checks the outputs of every node, not only at partition boundaries.
CHECK_OUTPUTS_KEY = "session.check_provider_outputs"

_HOST_ARRAYS = (np.ndarray, np.generic)


def _host_describe(value: Any) -> tuple[np.dtype, tuple[int, ...]] | None:
    return value.dtype, value.shape


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if not isinstance(d, int) else str(d) for d in shape) + "]"


def _value_check(
    name: str, expected: TypeInfo, transfer: DataTransfer | None, declared: bool = False
) -> Callable[[Any], str | None] | None:
    """A function returning what is wrong with a value of output ``name``, or None when it fits.

    With ``declared`` (a graph output, whose dimensions the model file states and converters
    sometimes state wrongly) a dimension that differs only warns, once, as onnxruntime does.
    """
    if expected.kind == "sequence":
        return lambda v: None if isinstance(v, list) else f"'{name}': expected {expected.onnx_name} (a list), got {type(v).__name__}"
    if expected.kind != "tensor":
        return None
    if transfer is None:
        array_type, describe, where = _HOST_ARRAYS, _host_describe, "a host numpy array"
    else:
        array_type, describe, where = transfer.array_type, transfer.describe, "a device array"
    want_dtype = expected.dtype
    want_shape = expected.shape
    strings = want_dtype is not None and want_dtype.kind == "O"

    def check(value: Any) -> str | None:
        if value is None:
            return f"'{name}': expected {expected.onnx_name}, got no value (None)"
        if array_type is not None and not isinstance(value, array_type):
            return f"'{name}': expected {where}, got {type(value).__module__}.{type(value).__name__}"
        try:
            described = describe(value)
        except Exception as exc:  # not an array at all
            return f"'{name}': expected {expected.onnx_name}, got {type(value).__name__} ({exc})"
        if described is None:
            return None
        dtype, shape = described
        if want_dtype is not None and dtype != want_dtype and not (strings and dtype.kind in "OUS"):
            return f"'{name}': expected element type {dtype_name(want_dtype)}, got {dtype_name(dtype)}"
        if want_shape is not None:
            if len(shape) != len(want_shape):
                return f"'{name}': expected rank {len(want_shape)} (shape {_fmt(want_shape)}), got rank {len(shape)} (shape {list(shape)})"
            for want, got in zip(want_shape, shape):
                if isinstance(want, int) and want != got:
                    problem = f"'{name}': expected shape {_fmt(want_shape)}, got {list(shape)}"
                    if not declared:
                        return problem
                    if not warned:
                        warned.append(True)
                        warnings.warn(f"graph output {problem} (the model declares that shape)", stacklevel=2)
                    break
        return None

    warned: list[bool] = []
    return check


def checked(
    run: Callable[..., Any],
    where: str,
    outputs: Sequence[tuple[int, str, TypeInfo | None, bool]],
    count: int,
    exact: bool,
    transfer: DataTransfer | None,
) -> Callable[..., Any]:
    """``run`` wrapped so that its result is checked; a violation raises ProviderError.

    ``where`` names the provider and node or partition; ``outputs`` lists (position, name,
    static type, whether it is a graph output) of the outputs to check; ``count`` is how many
    outputs the step has (a compiled subgraph must return exactly that many, ``exact``; a
    kernel at least that many).
    """
    checks = [
        (i, c)
        for i, name, t, declared in outputs
        if t is not None
        for c in [_value_check(name, t, transfer, declared)]
        if c is not None
    ]

    def fail(problem: str) -> ProviderError:
        return ProviderError(f"{where} returned a wrong output: {problem}")

    def run_checked(*args: Any) -> Any:
        result = run(*args)
        values = result if type(result) is tuple else (result,)
        if len(values) < count or (exact and len(values) != count):
            raise fail(f"expected {count} outputs, got {len(values)}")
        for i, check in checks:
            problem = check(values[i])
            if problem is not None:
                raise fail(problem)
        return result

    # the kernel's own attributes (a provider's markers such as ``cuda_node``) stay visible
    return functools.update_wrapper(run_checked, run, assigned=(), updated=("__dict__",))
