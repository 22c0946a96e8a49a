"""The TensorRT provider's options, under onnxruntime's TensorRT execution provider names.

Options arrive as strings (``{"trt_fp16_enable": "1"}``) or native values. Each parser raises
ValueError on a bad value, which the provider base class turns into ``InvalidArgument`` naming
the option; ``TensorrtSettings.from_options`` checks the options that depend on each other
(the three shape-profile options) and names them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.option_values import parse_flag

#: TensorRT's builder optimization levels (0: fastest build, 5: most tactics tried).
OPTIMIZATION_LEVELS = range(0, 6)
#: The three profile options, in min, opt, max order.
PROFILE_OPTIONS = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
#: The dimensions of one input's shape: ``1x3x224x224``.
_DIMS = re.compile(r"\d+(?:x\d+)*")

Shapes = dict[str, tuple[int, ...]]


def _whole_number(value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("expected a whole number")
    number = int(str(value).strip())
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"expected a whole number {bound}")
    return number


def parse_device_id(value: Any) -> int:
    """A CUDA device ordinal, 0 or more."""
    return _whole_number(value, 0)


def parse_workspace(value: Any) -> int:
    """Bytes of GPU memory the builder may use for tactics; 0 leaves TensorRT's default (the device's memory)."""
    return _whole_number(value, 0)


def parse_optimization_level(value: Any) -> int:
    """TensorRT's builder optimization level, 0 to 5."""
    return _whole_number(value, OPTIMIZATION_LEVELS.start, OPTIMIZATION_LEVELS.stop - 1)


def parse_path(value: Any) -> str:
    """A non-empty folder path."""
    text = str(value).strip()
    if not text:
        raise ValueError("expected a folder path")
    return text


def parse_shapes(value: Any) -> Shapes:
    """Comma-separated ``name:d0xd1x...`` entries, each input named once (onnxruntime's spelling).

    The last colon of an entry separates the input name (which may hold colons) from its dimensions.
    """
    text = str(value).strip()
    if not text:
        raise ValueError("expected shapes such as 'input:1x3x224x224,mask:1x224'")
    shapes: Shapes = {}
    for entry in (part.strip() for part in text.split(",")):
        name, _, dims = entry.rpartition(":")
        name, dims = name.strip(), dims.replace(" ", "")
        if not name or _DIMS.fullmatch(dims) is None:
            raise ValueError(f"entry {entry!r} is not 'name:d0xd1x...' with whole-number dimensions")
        if name in shapes:
            raise ValueError(f"input '{name}' is given twice")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "device_id": parse_device_id,
    "trt_fp16_enable": parse_flag,
    "trt_bf16_enable": parse_flag,
    "trt_max_workspace_size": parse_workspace,
    "trt_builder_optimization_level": parse_optimization_level,
    "trt_timing_cache_enable": parse_flag,
    "trt_timing_cache_path": parse_path,
    "trt_engine_cache_enable": parse_flag,
    "trt_engine_cache_path": parse_path,
    "trt_profile_min_shapes": parse_shapes,
    "trt_profile_opt_shapes": parse_shapes,
    "trt_profile_max_shapes": parse_shapes,
}


@dataclass(frozen=True)
class Profile:
    """One optimization profile: each named input's min, opt and max shapes."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorrtSettings:
    """The parsed options with onnxruntime's defaults filled in."""

    device_id: int = 0
    trt_fp16_enable: bool = False
    trt_bf16_enable: bool = False
    trt_max_workspace_size: int = 0
    trt_builder_optimization_level: int = 3
    trt_timing_cache_enable: bool = False
    trt_timing_cache_path: str = "."
    trt_engine_cache_enable: bool = False
    trt_engine_cache_path: str = "."
    profile: Profile | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "TensorrtSettings":
        """Settings from options parsed by ``OPTION_TYPES``; raises InvalidArgument on inconsistent profiles."""
        rest = {k: v for k, v in options.items() if k not in PROFILE_OPTIONS}
        return cls(**rest, profile=profile_from(options))


def profile_from(options: Mapping[str, Any]) -> Profile | None:
    """The explicit profile of the three ``trt_profile_*_shapes`` options, checked against each other."""
    given = [name for name in PROFILE_OPTIONS if name in options]
    if not given:
        return None
    if len(given) != len(PROFILE_OPTIONS):
        missing = ", ".join(n for n in PROFILE_OPTIONS if n not in given)
        raise InvalidArgument(f"TensorrtExecutionProvider: {', '.join(given)} given without {missing}; give all three")
    low, opt, high = (options[name] for name in PROFILE_OPTIONS)
    if not (set(low) == set(opt) == set(high)):
        raise InvalidArgument(
            "TensorrtExecutionProvider: trt_profile_min_shapes, trt_profile_opt_shapes and trt_profile_max_shapes "
            f"must name the same inputs (got {sorted(low)}, {sorted(opt)}, {sorted(high)})"
        )
    shapes = {}
    for name in low:
        if not (len(low[name]) == len(opt[name]) == len(high[name])):
            raise InvalidArgument(f"TensorrtExecutionProvider: input '{name}' has shapes of different ranks in the three trt_profile_*_shapes options")
        if not all(a <= b <= c for a, b, c in zip(low[name], opt[name], high[name])):
            raise InvalidArgument(
                f"TensorrtExecutionProvider: input '{name}' needs min <= opt <= max in every dimension "
                f"(min {low[name]}, opt {opt[name]}, max {high[name]})"
            )
        shapes[name] = (low[name], opt[name], high[name])
    return Profile(shapes)
