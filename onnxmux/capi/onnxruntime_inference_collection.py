"""onnxruntime's ``capi.onnxruntime_inference_collection`` path: the Python-level classes."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.iobinding import IOBinding
from onnxmux.core.memory import OrtDevice
from onnxmux.core.ortvalue import OrtValue
from onnxmux.core.session import InferenceSession
from onnxmux.core.sparse import SparseTensor

#: onnxruntime's base class of InferenceSession; onnxmux has one class.
Session = InferenceSession


def check_and_normalize_provider_args(
    providers: Sequence[Any] | None,
    provider_options: Sequence[dict] | None,
    available_provider_names: Sequence[str],
) -> tuple[list[str], list[dict[str, str]]]:
    """Provider names and their options (string keys and values), as onnxruntime normalizes them:
    unknown names warn, duplicates warn and are dropped, malformed arguments raise."""
    if providers is None:
        return [], []
    if isinstance(providers, str) or not isinstance(providers, Sequence):
        raise InvalidArgument("'providers' should be a sequence.")
    pairs: list[tuple[str, dict]] = []
    if provider_options is not None:
        if not isinstance(provider_options, Sequence) or len(providers) != len(provider_options):
            raise InvalidArgument("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise InvalidArgument("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, dict) for o in provider_options):
            raise InvalidArgument("'provider_options' values must be dicts.")
        pairs = list(zip(providers, provider_options))
    else:
        for spec in providers:
            if isinstance(spec, str):
                pairs.append((spec, {}))
            elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
                pairs.append(spec)
            else:
                raise InvalidArgument("'providers' values must be either strings or (string, dict) tuples.")
    normalized: dict[str, dict[str, str]] = {}
    for name, options in pairs:
        if name not in available_provider_names:
            warnings.warn(
                f"Specified provider '{name}' is not in available provider names. "
                f"Available providers: '{', '.join(available_provider_names)}'",
                stacklevel=2,
            )
        if name in normalized:
            warnings.warn(f"Duplicate provider '{name}' encountered, ignoring.", stacklevel=2)
            continue
        normalized[name] = {str(k): str(v) for k, v in options.items()}
    return list(normalized), list(normalized.values())


__all__ = ["IOBinding", "InferenceSession", "OrtDevice", "OrtValue", "Session", "SparseTensor", "check_and_normalize_provider_args"]
