"""Parsers of provider option values that several providers share (options arrive as strings or native values).

Each raises ValueError on a bad value; ``ExecutionProvider.parse_options`` turns that into an
``InvalidArgument`` naming the option.
"""

from __future__ import annotations

from typing import Any


def parse_flag(value: Any) -> bool:
    """True/False, 0/1, or the strings 0/1, true/false (onnxruntime's provider options use "0"/"1")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError("expected 0, 1, true or false")
