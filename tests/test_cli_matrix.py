"""``onnxmux report --json`` on this machine and ``onnxmux matrix`` merging reports, with a baseline."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from onnxmux.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A short report of this machine (two node tests, one timing round)."""
    path = tmp_path_factory.mktemp("reports") / "this.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "-k", "^test_(relu|abs)$", "--rounds", "1", "--json", "--machine", "ci-cpu"]) == 0
    path.write_text(out.getvalue())
    return path


def _lowered(report: Path, tmp_path: Path, provider: str) -> Path:
    data = json.loads(report.read_text())
    row = next(r for r in data["providers"] if r["provider"] == provider)
    row["passed"] -= 1
    path = tmp_path / "lowered.json"
    path.write_text(json.dumps(data))
    return path


def test_report_json_has_machine_versions_and_providers(report: Path) -> None:
    data = json.loads(report.read_text())
    assert data["machine"] == "ci-cpu" and data["node_tests"] == 2
    assert set(data["versions"]) == {"onnxmux", "onnx", "numpy"}
    rows = {r["provider"]: r for r in data["providers"]}
    for name in ("CPUExecutionProvider", "OpenVINOExecutionProvider", "OpenCLExecutionProvider"):
        assert rows[name]["available"] and rows[name]["passed"] == 2, rows[name]
    assert "openvino" in rows["OpenVINOExecutionProvider"]["sdk"]
    cuda = rows["CUDAExecutionProvider"]
    assert not cuda["available"] and "onnxmux[cuda]" in cuda["reason"]  # the extra's brackets survive


def test_matrix_board_in_markdown_and_html(report: Path, tmp_path: Path, capsys) -> None:
    other = json.loads(report.read_text())
    other["machine"] = "ci-opencl"
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    markdown, page = tmp_path / "board.md", tmp_path / "board.html"
    assert main(["matrix", str(report), str(other_path), "--markdown", str(markdown), "--html", str(page)]) == 0
    text = markdown.read_text()
    assert capsys.readouterr().out == text
    assert "| provider | ci-cpu | ci-opencl |" in text
    assert "| OpenVINOExecutionProvider | ✅ 2/2 passed;" in text
    cuda = next(r for r in other["providers"] if r["provider"] == "CUDAExecutionProvider")
    assert f"unavailable: {cuda['reason']}" in text and "onnxmux[cuda]" in text
    assert "Regressions" not in text
    html = page.read_text()
    assert "<th>ci-opencl</th>" in html and "OpenCLExecutionProvider" in html


def test_matrix_lists_regressions_against_a_baseline(report: Path, tmp_path: Path, capsys) -> None:
    assert main(["matrix", str(report), "--baseline", str(report)]) == 0
    assert "## Regressions against the baseline\n\nnone" in capsys.readouterr().out
    lowered = _lowered(report, tmp_path, "OpenVINOExecutionProvider")
    assert main(["matrix", str(lowered), "--baseline", str(report)]) == 1
    out = capsys.readouterr().out
    assert "- ci-cpu: OpenVINOExecutionProvider: node tests passed fell from 2 to 1" in out
    assert out.count("\n- ") == 1


def test_matrix_refuses_what_is_not_a_report(tmp_path: Path, capsys) -> None:
    old = tmp_path / "old.json"
    old.write_text("[]")
    assert main(["matrix", str(old)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onnxmux matrix: error:") and "older onnxmux report" in err and err.count("\n") == 1
