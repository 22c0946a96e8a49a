"""Optional values: an empty optional is None, a full one is the value itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op


@op("Optional", 15)
def optional(ctx: NodeContext, xp: Any):
    """An optional holding the input, or an empty one (of the ``type`` attribute) without input."""
    if ctx.num_inputs == 0 and "type" not in ctx.attrs:
        raise ctx.error("an Optional without input needs the 'type' attribute")

    def run(value=None):
        return value

    return run


@op("OptionalHasElement", 15)
def optional_has_element(ctx: NodeContext, xp: Any):
    """Whether the input holds a value: False for an empty optional or a missing input, True for
    a full optional, a tensor or a sequence."""

    def run(value=None):
        return xp.asarray(value is not None, dtype=np.bool_)

    return run


@op("OptionalGetElement", 15)
def optional_get_element(ctx: NodeContext, xp: Any):
    """The value held by an optional; a tensor or sequence input is returned as it is."""

    def run(value):
        if value is None:
            raise ValueError("the optional input is empty")
        return value

    return run
