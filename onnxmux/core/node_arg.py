"""NodeArg and ModelMetadata: the descriptions onnxruntime's API returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from onnxmux.core.types import Dim, TypeInfo


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output: name, shape (symbolic dims as str, unknown as None), type."""

    name: str
    shape: list[Dim] | None
    type: str

    @classmethod
    def from_type(cls, name: str, info: TypeInfo) -> NodeArg:
        """The NodeArg of a value of type ``info``."""
        if info.kind == "optional" and info.elem is not None and info.elem.kind == "tensor":
            shape = list(info.elem.shape) if info.elem.shape is not None else []  # as onnxruntime shows it
        elif info.kind == "tensor":
            shape = list(info.shape) if info.shape is not None else None
        else:
            shape = [] if info.kind != "unknown" else None
        return cls(name, shape, info.onnx_name)


@dataclass(frozen=True)
class ModelMetadata:
    """The model's descriptive fields, as ``get_modelmeta`` returns them."""

    producer_name: str = ""
    graph_name: str = ""
    domain: str = ""
    description: str = ""
    graph_description: str = ""
    version: int = 0
    custom_metadata_map: dict[str, str] = field(default_factory=dict)
