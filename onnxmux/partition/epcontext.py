"""Compiled-partition caching in onnxruntime's EPContext format.

With the session config entry ``ep.context_enable`` = "1", session creation writes a copy of
the (optimized) model in which every partition a compile-based provider could serialize
(``export_compiled``) is one ``com.microsoft`` ``EPContext`` node: ``ep_cache_context`` holds
the blob (``ep.context_embed_mode`` "1", the default) or the name of a file beside the model
holding it ("0"), ``embed_mode`` says which, ``source`` names the provider. Loading that model
hands each EPContext node to its provider's ``import_compiled``, so nothing is compiled again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import onnx
import onnx_ir as ir

from onnxmux.core.errors import InvalidArgument, InvalidGraph
from onnxmux.core.provider import CompileProvider, ExecutionProvider, Subgraph
from onnxmux.partition.subgraph import extract

CONTEXT_DOMAIN = "com.microsoft"
CONTEXT_OP = "EPContext"
ENABLE_KEY = "ep.context_enable"
FILE_KEY = "ep.context_file_path"
EMBED_KEY = "ep.context_embed_mode"


def is_context_node(node: ir.Node) -> bool:
    """Whether ``node`` is an EPContext node (a partition compiled earlier)."""
    return node.op_type == CONTEXT_OP and node.domain == CONTEXT_DOMAIN


def context_provider(node: ir.Node, providers: Sequence[ExecutionProvider]) -> CompileProvider | None:
    """The session's provider that made an EPContext node (its ``source``), if it is selected."""
    source = _attr(node, "source", "")
    for provider in providers:
        if isinstance(provider, CompileProvider) and (source == provider.name or source in provider.aliases):
            return provider
    return None


def context_blob(node: ir.Node, provider: ExecutionProvider) -> bytes:
    """The compiled blob of an EPContext node: embedded, or read from the file it names (which
    must lie in the model's folder)."""
    data = _attr(node, "ep_cache_context", b"")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if int(_attr(node, "embed_mode", 1)) == 1:
        return data
    folder = provider.provider_settings.model_dir
    if folder is None:
        raise InvalidGraph(f"EPContext node '{node.name}' names a blob file, but the model was not loaded from a file")
    path = (folder / data.decode("utf-8")).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise InvalidGraph(f"EPContext node '{node.name}': blob file '{data.decode()}' lies outside the model's folder")
    return path.read_bytes()


def context_subgraph(node: ir.Node, graph: ir.Graph, opsets: Mapping[str, int], implicit: Mapping[ir.Node, Sequence[ir.Value]]) -> Subgraph:
    """The EPContext node cut out as a Subgraph, without its blob (not copied again)."""
    blob = node.attributes.pop("ep_cache_context", None)
    try:
        return extract([node], graph, opsets, implicit)
    finally:
        if blob is not None:
            node.attributes["ep_cache_context"] = blob


def _attr(node: ir.Node, name: str, default: Any) -> Any:
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def context_path(config: Mapping[str, str], source: Any) -> Path:
    """Where the context model goes: ``ep.context_file_path``, else ``<model>_ctx.onnx`` beside the model."""
    given = config.get(FILE_KEY, "")
    if given:
        return Path(given)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path.with_name(f"{path.stem}_ctx.onnx")
    raise InvalidArgument(f"{ENABLE_KEY} is set for a model given as bytes: set {FILE_KEY} to say where to write it")


def save_context_model(model: ir.Model, units: Sequence[Any], config: Mapping[str, str], source: Any) -> Path:
    """Write the model with each exportable compiled partition replaced by an EPContext node;
    returns the file's path. ``units`` are the top-level graph's units in running order."""
    path = context_path(config, source)
    embed = config.get(EMBED_KEY, "1") != "0"
    proto = ir.serde.serialize_model(model)
    by_name = {node.name: node for node in proto.graph.node}
    nodes: list[onnx.NodeProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    for index, unit in enumerate(units):
        blob = None
        if unit.compiled is not None and not any(is_context_node(n) for n in unit.nodes):
            blob = unit.provider.export_compiled(unit.compiled)
        if blob is None:
            nodes.extend(by_name[n.name] for n in unit.nodes)
            continue
        name = f"{unit.provider.name}_{index}"
        if not embed:
            (path.parent / f"{path.stem}_{name}.blob").write_bytes(blob)
            blob = f"{path.stem}_{name}.blob".encode()
        nodes.append(
            onnx.helper.make_node(
                CONTEXT_OP,
                [v.name for v in unit.inputs],
                [v.name for v in unit.outputs],
                name=name,
                domain=CONTEXT_DOMAIN,
                embed_mode=1 if embed else 0,
                ep_cache_context=blob,
                source=unit.provider.name,
                main_context=1,
                partition_name=name,
            )
        )
        value_info += [ir.serde.serialize_value(v) for v in unit.outputs if not v.is_graph_output()]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.graph.value_info.extend(value_info)
    _drop_unused_initializers(proto.graph)
    if not any(o.domain == CONTEXT_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(CONTEXT_DOMAIN, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node (nor subgraph) reads: their data now lives in the blobs."""
    used = {o.name for o in graph.output} | {i.name for i in graph.input}
    stack = list(graph.node)
    while stack:
        node = stack.pop()
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                stack.extend(sub.node)
                used.update(o.name for o in sub.output)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
