"""The CUDA provider's options, under onnxruntime's names, and their parsers.

Options arrive as strings from onnxruntime-style code (``{"device_id": "0"}``) or as native
values; each parser raises ValueError on a bad value, which the provider base class turns into
an ``InvalidArgument`` naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxmux.core.option_values import parse_flag

#: onnxruntime's arena strategies, by name and by their enum number.
ARENA_STRATEGIES = {"kNextPowerOfTwo": "kNextPowerOfTwo", "kSameAsRequested": "kSameAsRequested", "0": "kNextPowerOfTwo", "1": "kSameAsRequested"}
#: onnxruntime's cuDNN algorithm searches, by name and by their enum number.
CONV_ALGO_SEARCHES = {"EXHAUSTIVE": "EXHAUSTIVE", "HEURISTIC": "HEURISTIC", "DEFAULT": "DEFAULT", "0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}


def _whole_number(minimum: int, what: str) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected {what}")
        number = int(str(value).strip())
        if number < minimum:
            raise ValueError(f"expected {what}, at least {minimum}")
        return number

    parse.__doc__ = f"A whole number of at least {minimum}: {what}."
    return parse


parse_device_id = _whole_number(0, "a device ordinal")
parse_memory_limit = _whole_number(1, "a number of bytes")


def _choice(choices: Mapping[str, str]) -> Any:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in choices:
            names = sorted({v for v in choices.values()})
            raise ValueError(f"expected one of {', '.join(names)}")
        return choices[text]

    parse.__doc__ = f"One of {', '.join(sorted(set(choices.values())))} (or its number)."
    return parse


OPTION_TYPES = {
    "device_id": parse_device_id,
    "gpu_mem_limit": parse_memory_limit,
    "arena_extend_strategy": _choice(ARENA_STRATEGIES),
    "cudnn_conv_algo_search": _choice(CONV_ALGO_SEARCHES),
    "enable_cuda_graph": parse_flag,
    "do_copy_in_default_stream": parse_flag,
}


@dataclass(frozen=True)
class CUDASettings:
    """The parsed options with onnxruntime's defaults filled in."""

    device_id: int = 0
    gpu_mem_limit: int | None = None
    arena_extend_strategy: str = "kNextPowerOfTwo"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    enable_cuda_graph: bool = False
    do_copy_in_default_stream: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CUDASettings:
        """Settings from already parsed options (``ExecutionProvider.options``)."""
        return cls(**options)
