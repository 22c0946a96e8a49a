"""Checking and converting the values fed to a session, and detaching its outputs from them.

Feeds are converted as onnxruntime converts them: Python lists and scalars become arrays of
the declared element type, string tensors may come as numpy ``str_``, ``bytes_`` or object
arrays (held as object arrays of ``str``), and non-contiguous arrays are made contiguous.
Error messages keep onnxmux's detail and add onnxruntime's wording, which code matches on.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from onnxmux.core.device_values import element_dtype, is_device_array
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.types import TypeInfo, dtype_name

_PLEASE_FIX = "Please fix either the inputs/outputs or the model."


class InputSpec:
    """A graph input's declared type, and the check of a value fed for it."""

    def __init__(self, name: str, type_: TypeInfo | None, has_default: bool) -> None:
        self.name = name
        self.type = type_ or TypeInfo("unknown")
        self.has_default = has_default
        t = self.type
        numeric = t.kind == "tensor" and t.dtype is not None and t.dtype.kind not in "OUS"
        #: The element type a numpy array fed here may have to pass unconverted (None: always convert).
        self._exact_dtype = t.dtype if numeric else None
        #: The declared shape, None for a dimension of any size (None altogether: any rank).
        self._dims = None if t.shape is None else tuple(d if isinstance(d, int) else None for d in t.shape)

    def check(self, value: Any) -> Any:
        """The value, converted to an array for tensor inputs; InvalidArgument when it does not fit."""
        exact = self._exact_dtype
        if exact is not None and type(value) is np.ndarray and value.dtype == exact and value.flags.c_contiguous:
            if self._fits(value.shape):  # the common case, decided without building messages
                return value
        t = self.type
        if t.kind != "tensor":
            return self._check_container(value)
        if is_device_array(value):  # checked where it lives; the provider's transfer adopts it
            self.check_tensor(element_dtype(value), tuple(value.shape))
            return value
        array = self._as_array(value)
        self.check_tensor(array.dtype, array.shape)
        return array if array.flags.c_contiguous or array.dtype == object else np.ascontiguousarray(array)

    def _as_array(self, value: Any) -> np.ndarray:
        t = self.type
        if value is None or isinstance(value, dict):
            raise InvalidArgument(f"input '{self.name}': expected {t.onnx_name}, got {type(value).__name__}")
        is_string = t.dtype is not None and t.dtype.kind in "OUS"
        if is_string:
            return _as_strings(self.name, value)
        if isinstance(value, np.ndarray):
            return value
        try:  # a Python list or scalar takes the declared element type, as in onnxruntime
            return np.asarray(value, dtype=t.dtype)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"input '{self.name}': expected {t.onnx_name}, got a {type(value).__name__} that does not convert: {exc}"
            ) from exc

    def _fits(self, shape: tuple[int, ...]) -> bool:
        dims = self._dims
        if dims is None:
            return True
        if len(shape) != len(dims):
            return False
        for want, got in zip(dims, shape):
            if want is not None and want != got:
                return False
        return True

    def check_tensor(self, dtype: np.dtype, shape: Sequence[int]) -> None:
        """InvalidArgument when a tensor of this element type and shape does not fit the input."""
        t = self.type
        got = "string" if np.dtype(dtype).kind in "OUS" else dtype_name(dtype)
        want = "string" if t.dtype is not None and t.dtype.kind in "OUS" else dtype_name(t.dtype)
        if t.dtype is not None and got != want:
            raise InvalidArgument(
                f"input '{self.name}': expected {t.onnx_name}, got tensor({got}). "
                f"Unexpected input data type. Actual: (tensor({got})) , expected: ({t.onnx_name})"
            )
        if t.shape is None:
            return
        if len(shape) != len(t.shape):
            raise InvalidArgument(
                f"input '{self.name}': expected rank {len(t.shape)} with shape {_fmt(t.shape)}, "
                f"got rank {len(shape)} with shape {list(shape)}. "
                f"Invalid rank for input: {self.name} Got: {len(shape)} Expected: {len(t.shape)} {_PLEASE_FIX}"
            )
        for axis, (want_dim, got_dim) in enumerate(zip(t.shape, shape)):
            if isinstance(want_dim, int) and want_dim != got_dim:
                raise InvalidArgument(
                    f"input '{self.name}': dimension {axis} must be {want_dim} (shape {_fmt(t.shape)}), "
                    f"got {got_dim} (shape {list(shape)}). Got invalid dimensions for input: {self.name} "
                    f"for the following indices\n index: {axis} Got: {got_dim} Expected: {want_dim}\n {_PLEASE_FIX}"
                )

    def _check_container(self, value: Any) -> Any:
        kind = self.type.kind
        if kind == "sequence" and not isinstance(value, list):
            raise InvalidArgument(f"input '{self.name}': expected {self.type.onnx_name} (a list), got {type(value).__name__}")
        if kind == "map" and not isinstance(value, dict):
            raise InvalidArgument(f"input '{self.name}': expected {self.type.onnx_name} (a dict), got {type(value).__name__}")
        return value


def _as_strings(name: str, value: Any) -> np.ndarray:
    """A string tensor as an object array of ``str`` (bytes decoded as UTF-8)."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind not in "SO":
        raise InvalidArgument(
            f"input '{name}': expected tensor(string), got tensor({dtype_name(array.dtype)}). "
            f"Unexpected input data type. Actual: (tensor({dtype_name(array.dtype)})) , expected: (tensor(string))"
        )
    out = np.empty(array.shape, object)
    flat = out.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgument(f"input '{name}': element {i} is not UTF-8 text: {exc}") from exc
        elif not isinstance(item, str):
            raise InvalidArgument(f"input '{name}': element {i} is a {type(item).__name__}, not a string")
        flat[i] = item
    return out


def missing_input(spec: InputSpec, fed: Sequence[str], required: Sequence[str]) -> InvalidArgument:
    """The error for a required input absent from the feed, in onnxmux's and onnxruntime's words."""
    return InvalidArgument(
        f"missing input '{spec.name}' ({spec.type.onnx_name}). "
        f"Required inputs ({list(required)}) are missing from input feed ({list(fed)})."
    )


def unknown_name(kind: str, name: str, known: Sequence[str]) -> InvalidArgument:
    """The error for an input or output name the model does not have."""
    wording = f"Invalid {kind} name: {name}" if kind == "input" else f"Invalid {kind} name:{name}"
    return InvalidArgument(f"unknown {kind} name '{name}'; the model's {kind}s are: {', '.join(known)}. {wording}")


def detach(outputs: list[Any], feeds: Sequence[Any]) -> list[Any]:
    """The outputs, with any array sharing memory with a fed array copied (a graph input that is also
    an output, or an Identity of one), so writing to an output never changes the caller's input."""
    arrays = [f for f in feeds if isinstance(f, np.ndarray)]
    if not arrays:
        return outputs
    return [
        o.copy() if isinstance(o, np.ndarray) and any(np.may_share_memory(o, a) for a in arrays) else o
        for o in outputs
    ]


def _fmt(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
