"""``onnxmux plan --html`` draws every node in a real browser; ``--annotate`` writes provider and partition metadata."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import onnx

from onnxmux.cli import main
from onnxmux.cli.demo import build_cnn

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def _plan(tmp_path: Path, capsys, *extra: str) -> tuple[Path, dict]:
    model = tmp_path / "cnn.onnx"
    onnx.save(build_cnn(), model)
    assert main(["plan", str(model), "--providers", "test-device,cpu", "--json", *extra]) == 0
    return model, json.loads(capsys.readouterr().out)


def test_html_page_is_self_contained_and_marks_partitions_and_copies(tmp_path: Path, capsys) -> None:
    page = tmp_path / "plan.html"
    _, plan = _plan(tmp_path, capsys, "--html", str(page))
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "the page must not load anything"
    drawn = re.findall(r'<g class="node" data-name="([^"]+)"', text)
    assert sorted(drawn) == sorted(n["name"] for n in plan["nodes"])
    boxed = [p for p in plan["partitions"] if len(p["nodes"]) > 1]
    assert text.count('<g class="partition">') == len(boxed) > 0
    assert plan["copies"] and text.count('class="edge copy"') >= len(plan["copies"])
    for copy in plan["copies"]:
        assert f"{copy['from']}→{copy['to']}" in text


def test_every_node_is_drawn_in_headless_chromium(tmp_path: Path, capsys) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (.ci/run installs it)"
    page = tmp_path / "plan.html"
    _, plan = _plan(tmp_path, capsys, "--html", str(page))
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    count = len(plan["nodes"])
    assert f'data-drawn="{count}/{count}"' in dom, dom[-500:]


def test_annotate_writes_provider_and_partition_metadata(tmp_path: Path, capsys) -> None:
    annotated = tmp_path / "annotated.onnx"
    _, plan = _plan(tmp_path, capsys, "--annotate", str(annotated))
    model = onnx.load(annotated)
    onnx.checker.check_model(model)
    metadata = {n.name: {p.key: p.value for p in n.metadata_props} for n in model.graph.node}
    assert set(metadata) == {n["name"] for n in plan["nodes"]}
    for node in plan["nodes"]:
        assert metadata[node["name"]]["onnxmux.provider"] == node["provider"]
        assert metadata[node["name"]]["onnxmux.partition"] == str(node["partition"])
