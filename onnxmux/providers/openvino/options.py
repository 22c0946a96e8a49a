"""The OpenVINO provider's options, spelled as onnxruntime's OpenVINO execution provider spells them.

Options arrive as strings (``{"device_type": "CPU", "num_of_threads": "4"}``) or as native
values; the parsers below accept both. ``Settings`` gathers the parsed options and turns them
into the properties handed to ``Core.compile_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from onnxmux.core.errors import InvalidArgument

#: ``precision`` values and the ``INFERENCE_PRECISION_HINT`` each sets.
PRECISIONS = {"FP32": "f32", "ACCURACY": "f32", "FP16": "f16", "BF16": "bf16"}
#: Devices that dispatch to other devices, written ``AUTO`` or ``AUTO:GPU,CPU``.
VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(value: Any) -> bool:
    """``True``/``False`` or one of the strings 1/0, true/false, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def parse_positive_int(value: Any) -> int:
    """A whole number of at least 1, given as an int or a string."""
    if isinstance(value, bool):
        raise ValueError("expected a positive integer")
    number = int(str(value).strip())
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def parse_device(value: Any) -> str:
    """A device name such as ``CPU``, ``GPU.0``, ``NPU`` or ``AUTO:GPU,CPU`` (upper-cased).

    Only the spelling is checked here; whether the device exists is checked against the
    installed OpenVINO when the provider is created (``check_device``).
    """
    text = str(value).strip().upper()
    if not text or any(c.isspace() for c in text):
        raise ValueError("expected a device name such as CPU, GPU, NPU or AUTO")
    return text


def parse_precision(value: Any) -> str:
    """One of FP32, FP16, BF16 or ACCURACY."""
    text = str(value).strip().upper()
    if text not in PRECISIONS:
        raise ValueError(f"expected one of {', '.join(PRECISIONS)}")
    return text


def parse_path(value: Any) -> str:
    """A non-empty folder path."""
    text = str(value)
    if not text:
        raise ValueError("expected a folder path")
    return text


OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "device_type": parse_device,
    "precision": parse_precision,
    "num_of_threads": parse_positive_int,
    "num_streams": parse_positive_int,
    "cache_dir": parse_path,
    "disable_dynamic_shapes": parse_bool,
}


@dataclass(frozen=True)
class Settings:
    """The parsed options with their defaults filled in."""

    device_type: str = "CPU"
    precision: str = "FP32"
    num_of_threads: int | None = None
    num_streams: int | None = None
    cache_dir: str | None = None
    disable_dynamic_shapes: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Settings":
        """Settings from options already parsed by ``OPTION_TYPES``."""
        return cls(**options)

    def device_properties(self) -> dict[str, Any]:
        """The properties this session sets on every physical device it compiles for."""
        properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[self.precision]}
        if self.num_of_threads is not None:
            properties["INFERENCE_NUM_THREADS"] = self.num_of_threads
        if self.num_streams is not None:
            properties["NUM_STREAMS"] = self.num_streams
        return properties


def physical_devices(device_type: str) -> list[str]:
    """The devices named by ``device_type``: itself, or the list after ``AUTO:``/``HETERO:``/``MULTI:``."""
    head, _, tail = device_type.partition(":")
    if head in VIRTUAL_DEVICES:
        return [d for d in tail.split(",") if d]
    return [device_type]


def check_device(device_type: str, available: list[str]) -> None:
    """Raise InvalidArgument naming ``device_type`` when it names a device OpenVINO does not have.

    ``available`` is ``Core.available_devices`` (``CPU``, ``GPU.0``, ``NPU``...); a device
    without an index (``GPU``) matches any of its indexed instances.
    """
    families = {d.split(".")[0] for d in available}
    for device in physical_devices(device_type):
        if device not in available and device not in families:
            raise InvalidArgument(
                f"OpenVINOExecutionProvider: option 'device_type' names device '{device}', which this "
                f"machine's OpenVINO does not have (available: {', '.join(available) or 'none'})"
            )
