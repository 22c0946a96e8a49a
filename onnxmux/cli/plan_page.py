"""``onnxmux plan --html`` and ``--annotate``: the partitioned graph as one self-contained page, and
the model with each node's provider and partition in its metadata (for viewers such as Netron).

The page draws the graph the session runs (after optimization): nodes colored by provider,
partitions boxed, copies between devices marked on their edges. grandalf's Sugiyama layout
places the nodes; a little inline script adds zoom, pan and search by node name.
"""

from __future__ import annotations

import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onnx

from onnxmux.core.errors import InvalidArgument
from onnxmux.core.options import SessionOptions
from onnxmux.core.session import InferenceSession

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 34, 30, 46
#: Prefixes of the vertices drawn for graph inputs and outputs (not nodes of the plan).
INPUT, OUTPUT = "input:", "output:"
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
CPU_COLOR = "#9aa5b1"


def plan_session(model: Path, providers: Sequence[str] | None) -> tuple[InferenceSession, onnx.ModelProto]:
    """A session for ``model`` and the model as it runs (optimized), read back from the session's own copy."""
    with tempfile.TemporaryDirectory() as folder:
        options = SessionOptions()
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        session = InferenceSession(str(model), options, providers=providers)
        return session, onnx.load(options.optimized_model_filepath)


def annotate(model: onnx.ModelProto, plan: dict[str, Any], path: Path) -> None:
    """Write ``model`` with ``onnxmux.provider``, ``onnxmux.partition`` and ``onnxmux.device`` in each node's metadata."""
    where = {n["name"]: n for n in plan["nodes"]}
    devices = {p["id"]: p["device"] for p in plan["partitions"]}
    for node in model.graph.node:
        placed = where.get(node.name)
        if placed is None:
            continue
        values = {"onnxmux.provider": placed["provider"], "onnxmux.partition": str(placed["partition"]), "onnxmux.device": devices[placed["partition"]]}
        kept = [p for p in node.metadata_props if p.key not in values]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
        for key, value in values.items():
            node.metadata_props.add(key=key, value=value)
    large = sum(t.ByteSize() for t in model.graph.initializer) > 1_500_000_000
    try:
        onnx.save(model, str(path), save_as_external_data=large, location=f"{path.name}.data" if large else None)
    except OSError as exc:
        raise InvalidArgument(f"--annotate: cannot write '{path}': {exc}") from exc


@dataclass
class Layout:
    """Node centers and edge polylines, in page coordinates."""

    centers: dict[str, tuple[float, float]]
    edges: list[tuple[str, str, str, list[tuple[float, float]]]]  # (source, target, value, points)
    width: float
    height: float


def layout(model: onnx.ModelProto) -> Layout:
    """Sugiyama layering (grandalf) of the graph's nodes, one connected component beside the other."""
    try:
        from grandalf.graphs import Edge, Graph, Vertex
        from grandalf.layouts import SugiyamaLayout
    except ImportError as exc:
        raise InvalidArgument('--html needs the graph-layout package grandalf: pip install "onnxmux[viz]"') from exc

    class View:
        w, h = NODE_W, NODE_H

    class Path_:
        def setpath(self, points: list) -> None:
            self.points = points

    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    names = [f"{INPUT}{n}" for n in inputs] + [node.name for node in model.graph.node] + [f"{OUTPUT}{o.name}" for o in model.graph.output]
    vertices = {name: Vertex(name) for name in names}
    for vertex in vertices.values():
        vertex.view = View()
    producer = {out: node.name for node in model.graph.node for out in node.output if out}
    producer.update((n, f"{INPUT}{n}") for n in inputs)
    readers = [(node.name, list(dict.fromkeys(node.input))) for node in model.graph.node]
    readers += [(f"{OUTPUT}{o.name}", [o.name]) for o in model.graph.output]
    links = []
    for reader, values in readers:
        for value in values:
            if value in producer and producer[value] != reader:
                edge = Edge(vertices[producer[value]], vertices[reader], data=value)
                edge.view = Path_()
                links.append(edge)
    graph = Graph(list(vertices.values()), links)
    centers: dict[str, tuple[float, float]] = {}
    edges = []
    offset = 0.0
    for component in graph.C:
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace, sugiyama.yspace = GAP_X, GAP_Y
        sugiyama.init_all()
        sugiyama.draw()
        xs = [v.view.xy[0] for v in component.sV]
        shift = offset - min(xs) + NODE_W / 2
        for v in component.sV:
            centers[v.data] = (v.view.xy[0] + shift, v.view.xy[1] + NODE_H)
        for e in component.sE:
            points = getattr(e.view, "points", None) or [e.v[0].view.xy, e.v[1].view.xy]
            edges.append((e.v[0].data, e.v[1].data, e.data, [(x + shift, y + NODE_H) for x, y in points]))
        offset += max(xs) - min(xs) + NODE_W + GAP_X * 2
    width = max((x for x, _ in centers.values()), default=0) + NODE_W
    height = max((y for _, y in centers.values()), default=0) + NODE_H * 2
    return Layout(centers, edges, width, height)


def render(model: onnx.ModelProto, plan: dict[str, Any], title: str) -> str:
    """The self-contained page: an SVG of the laid-out graph, a legend, and the zoom/search script."""
    e = html.escape
    placed = {n["name"]: n for n in plan["nodes"]}
    colors = {name: (CPU_COLOR if name == "CPUExecutionProvider" else PALETTE[i % len(PALETTE)]) for i, name in enumerate(plan["providers"])}
    copied = {(c["value"], c["to"]): c for c in plan["copies"]}
    devices = {p["id"]: p["device"] for p in plan["partitions"]}
    ops = {n.name: n.op_type for n in model.graph.node}
    box = layout(model)
    parts = []
    for p in plan["partitions"]:
        members = [box.centers[n] for n in p["nodes"] if n in box.centers]
        if len(members) < 2:
            continue
        x0, y0 = min(x for x, _ in members) - NODE_W / 2 - 8, min(y for _, y in members) - NODE_H / 2 - 18
        x1, y1 = max(x for x, _ in members) + NODE_W / 2 + 8, max(y for _, y in members) + NODE_H / 2 + 8
        parts.append(
            f'<g class="partition"><rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" rx="8" '
            f'stroke="{colors.get(p["provider"], "#333")}"/><text x="{x0 + 6:.1f}" y="{y0 + 13:.1f}">partition {p["id"]}: '
            f'{e(p["provider"])} ({p["kind"]}, {len(p["nodes"])} nodes)</text></g>'
        )
    for source, target, value, points in box.edges:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        target_device = devices.get(placed[target]["partition"], "") if target in placed else "cpu"
        copy = copied.get((value, target_device))
        if copy is None:
            parts.append(f'<polyline class="edge" points="{path}"><title>{e(value)}</title></polyline>')
            continue
        (ax, ay), (bx, by) = points[len(points) // 2 - 1], points[len(points) // 2]
        label = f"copy {copy['from']} → {copy['to']}"
        parts.append(
            f'<polyline class="edge copy" points="{path}"><title>{e(value)}: {e(label)}</title></polyline>'
            f'<text class="copy-label" x="{(ax + bx) / 2 + 4:.1f}" y="{(ay + by) / 2:.1f}">⇄ {e(copy["from"])}→{e(copy["to"])}</text>'
        )
    for name, (x, y) in box.centers.items():
        if name not in placed:  # a graph input or output
            parts.append(
                f'<g class="io" transform="translate({x - NODE_W / 2:.1f},{y - NODE_H / 2:.1f})"><rect width="{NODE_W}" '
                f'height="{NODE_H}" rx="17"/><text x="{NODE_W / 2}" y="21">{e(_short(name))}</text></g>'
            )
            continue
        node = placed[name]
        provider = node["provider"]
        parts.append(
            f'<g class="node" data-name="{e(name)}" transform="translate({x - NODE_W / 2:.1f},{y - NODE_H / 2:.1f})">'
            f'<title>{e(name)} ({e(ops[name])}) on {e(provider)}, partition {node["partition"]}</title>'
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="5" fill="{colors.get(provider, "#ccc")}"/>'
            f'<text x="{NODE_W / 2}" y="14">{e(ops[name])}</text><text class="name" x="{NODE_W / 2}" y="27">{e(_short(name))}</text></g>'
        )
    legend = "".join(
        f'<span class="key"><i style="background:{colors[p]}"></i>{e(p)}: {sum(n["provider"] == p for n in plan["nodes"])} nodes</span>'
        for p in plan["providers"]
    )
    summary = f"{len(plan['nodes'])} nodes, {len(plan['partitions'])} partitions, {len(plan['copies'])} copies between devices"
    return PAGE.format(
        title=e(title), legend=legend, summary=e(summary), width=f"{box.width:.0f}", height=f"{box.height:.0f}",
        svg="\n".join(parts), count=json.dumps(len(placed)),
    )


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{margin:0;font-family:sans-serif;display:flex;flex-direction:column;height:100vh}}
header{{padding:.5em 1em;border-bottom:1px solid #ccc;display:flex;flex-wrap:wrap;gap:.5em 1.2em;align-items:center}}
header h1{{font-size:1.1em;margin:0}} .key i{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle;border-radius:2px}}
#view{{flex:1;overflow:hidden;cursor:grab;background:#fafafa}} svg{{width:100%;height:100%}}
.node rect{{stroke:#333;stroke-width:.8}} .node text{{font-size:11px;text-anchor:middle;fill:#fff;font-weight:bold;pointer-events:none}}
.node text.name{{font-weight:normal;font-size:9.5px}}
.io rect{{fill:#fff;stroke:#555;stroke-dasharray:3 2}} .io text{{font-size:10px;text-anchor:middle}} .node.hit rect{{stroke:#d00;stroke-width:4}}
.partition rect{{fill:none;stroke-width:2;stroke-dasharray:6 3}} .partition text{{font-size:10px;fill:#444}}
.edge{{fill:none;stroke:#777;stroke-width:1.2}} .edge.copy{{stroke:#d62728;stroke-width:2.5;stroke-dasharray:5 3}}
.copy-label{{font-size:10px;fill:#d62728;font-weight:bold}}
</style></head><body>
<header><h1>{title}</h1><span>{summary}</span>{legend}
<span class="key"><i style="background:#d62728"></i>copy between devices</span>
<input id="search" placeholder="search node name" size="22"> <span id="hits"></span>
<button id="fit">fit</button></header>
<div id="view"><svg id="graph" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
{svg}
</svg></div>
<script>
(function () {{
  const svg = document.getElementById("graph");
  const full = [0, 0, {width}, {height}];
  const show = () => svg.setAttribute("viewBox", box.join(" "));
  // Start at the top of the graph, as wide as the graph but zoomed in at most 1.5x.
  const area = svg.getBoundingClientRect();
  const startWidth = Math.max(full[2], area.width / 1.5);
  let box = [(full[2] - startWidth) / 2, 0, startWidth, startWidth * area.height / area.width];
  show();
  const point = (ev) => {{
    const r = svg.getBoundingClientRect();
    const s = Math.max(box[2] / r.width, box[3] / r.height);
    return [box[0] + (ev.clientX - r.left) * s, box[1] + (ev.clientY - r.top) * s, s];
  }};
  svg.addEventListener("wheel", (ev) => {{
    ev.preventDefault();
    const [x, y] = point(ev);
    const k = ev.deltaY > 0 ? 1.2 : 1 / 1.2;
    box = [x - (x - box[0]) * k, y - (y - box[1]) * k, box[2] * k, box[3] * k];
    show();
  }}, {{passive: false}});
  let drag = null;
  svg.addEventListener("mousedown", (ev) => {{ drag = [ev.clientX, ev.clientY]; }});
  window.addEventListener("mouseup", () => {{ drag = null; }});
  window.addEventListener("mousemove", (ev) => {{
    if (!drag) return;
    const s = point(ev)[2];
    box[0] -= (ev.clientX - drag[0]) * s; box[1] -= (ev.clientY - drag[1]) * s;
    drag = [ev.clientX, ev.clientY];
    show();
  }});
  document.getElementById("fit").onclick = () => {{ box = full.slice(); show(); }};
  const nodes = Array.from(document.querySelectorAll("g.node"));
  document.getElementById("search").addEventListener("input", (ev) => {{
    const text = ev.target.value.trim().toLowerCase();
    const hits = nodes.filter((n) => text && n.dataset.name.toLowerCase().includes(text));
    nodes.forEach((n) => n.classList.toggle("hit", hits.includes(n)));
    document.getElementById("hits").textContent = text ? hits.length + " found" : "";
    if (hits.length) {{
      const b = hits[0].getBBox(), m = hits[0].transform.baseVal.consolidate().matrix;
      box = [m.e + b.width / 2 - 400, m.f + b.height / 2 - 250, 800, 500];
      show();
    }}
  }});
  // For automated checks: how many nodes have a visible box once the page is laid out.
  document.body.dataset.drawn = nodes.filter((n) => n.getBBox().width > 0).length + "/" + {count};
}})();
</script></body></html>
"""
