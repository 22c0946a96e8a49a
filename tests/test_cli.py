"""The onnxmux command: demo, run, plan, providers, report; errors are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from onnxmux.cli import main
from onnxmux.cli.demo import build_cnn


def test_demo_prints_predictions(capsys) -> None:
    assert main(["demo", "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "predicted class" in out and "batch of 3" in out


def test_run_with_random_and_given_inputs(tmp_path: Path, capsys) -> None:
    model = tmp_path / "cnn.onnx"
    onnx.save(build_cnn(), model)
    assert main(["run", str(model), "--repeat", "2"]) == 0
    assert "probabilities" in capsys.readouterr().out
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((2, 3, 32, 32), np.float32))
    assert main(["run", str(model), "--input", f"image={images}"]) == 0
    assert "[2, 10]" in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onnxmux run: error:") and "missing.onnx" in err
    model = tmp_path / "cnn.onnx"
    onnx.save(build_cnn(), model)
    assert main(["run", str(model), "--input", "image"]) == 2
    assert "NAME=FILE.npy" in capsys.readouterr().err


def test_plan_json_is_the_execution_plan(tmp_path: Path, capsys) -> None:
    model = tmp_path / "cnn.onnx"
    onnx.save(build_cnn(), model)
    assert main(["plan", str(model), "--providers", "test-device,cpu", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["providers"] == ["TestDeviceExecutionProvider", "CPUExecutionProvider"]
    assert {n["provider"] for n in plan["nodes"]} == set(plan["providers"])
    assert main(["plan", str(model), "--providers", "test-device,cpu"]) == 0
    out = capsys.readouterr().out
    assert "copies between devices" in out and "TestDeviceExecutionProvider" in out


def test_report_lists_providers_with_coverage_and_speed(capsys) -> None:
    assert main(["report", "-k", "^test_(relu|abs)$", "--rounds", "1", "--json"]) == 0
    rows = {row["provider"]: row for row in json.loads(capsys.readouterr().out)["providers"]}
    cpu = rows["CPUExecutionProvider"]
    assert cpu["available"] and cpu["passed"] == 2 and cpu["regressions"] == []
    device = rows["TestDeviceExecutionProvider"]
    assert device["cases_with_nodes_here"] == 1  # Relu has an even-length name; Abs does not
    assert device["demo_ms"] > 0
