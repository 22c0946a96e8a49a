"""The rough edges of the command line, one test each: report's progress, -k handling, speed column,
uncut names and install hints; known providers that are not installed; help texts; demo, run and
plan options; no numpy RuntimeWarning reaching the user."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import onnxmux
from onnxmux.cli import build_parser, main
from onnxmux.cli.demo import build_cnn
from onnxmux.core import discovery

from helpers import single_node_model


class _NeedsAnExtra(onnxmux.KernelProvider):
    """Unavailable, with an install hint whose brackets a markup language would eat."""

    name = "NeedsAnExtraExecutionProvider"
    registry = onnxmux.KernelRegistry()

    @classmethod
    def unavailable_reason(cls) -> str:
        return 'the fake SDK is missing: pip install "onnxmux[fake]"'


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def report_text() -> tuple[int, str, str]:
    """One short report in table form, with a provider that needs an extra registered for it."""
    onnxmux.register_provider(_NeedsAnExtra)
    try:
        return _cli("report", "-k", "^test_relu$", "--rounds", "1")
    finally:
        discovery._registered.pop(_NeedsAnExtra.name)


@pytest.fixture
def cnn(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(build_cnn(), path)
    return path


def test_report_shows_progress_of_the_node_suite(report_text) -> None:
    err = report_text[2]
    assert "node tests on CPUExecutionProvider" in err and "1/1" in err


def test_report_k_invalid_is_one_line_error_and_no_match_a_warning() -> None:
    code, out, err = _cli("report", "-k", "test_(relu")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("onnxmux report: error: -k 'test_(relu' is not a valid regular expression")
    code, out, err = _cli("report", "-k", "^no_such_test$")
    assert code == 1 and out == ""
    assert re.fullmatch(r"onnxmux report: warning: -k '\^no_such_test\$' matches none of the \d+ node tests\n", err)


def test_report_speed_column_shows_both_times_and_the_verdict(report_text) -> None:
    code, out, _ = report_text
    assert code == 0
    line = next(line for line in out.splitlines() if "OpenVINOExecutionProvider" in line)
    assert re.search(r"\d+\.\d\d \(\d+\.\d\d\) .*\d\.\d\dx (faster|slower)", line), line
    assert "reference" in next(line for line in out.splitlines() if "CPUExecutionProvider" in line)


def test_report_never_cuts_names_or_install_hints(report_text) -> None:
    out = report_text[1]
    for name in ("HeavyOpsDeviceExecutionProvider", "CompileTestExecutionProvider", "NeedsAnExtraExecutionProvider"):
        assert name in out
    assert 'NeedsAnExtraExecutionProvider is unavailable: the fake SDK is missing: pip install "onnxmux[fake]"' in out
    assert "…" not in out


def test_providers_keeps_install_hints() -> None:
    onnxmux.register_provider(_NeedsAnExtra)
    try:
        code, out, _ = _cli("providers")
    finally:
        discovery._registered.pop(_NeedsAnExtra.name)
    assert code == 0 and 'pip install "onnxmux[fake]"' in out
    assert "unknown" not in out


def test_known_provider_not_installed_is_one_warning_line_never_unknown(cnn: Path) -> None:
    installed = discovery.find("tensorrt") is not None
    code, out, err = _cli("run", str(cnn), "--providers", "tensorrt,cpu")
    assert code == 0 and "probabilities" in out
    if not installed:
        assert err == 'onnxmux run: warning: TensorrtExecutionProvider is not available and is skipped: not installed: pip install "onnxmux[tensorrt]"\n'
    assert "unknown" not in err and "Warning" not in err and err.count("\n") <= 1
    for short in ("cuda", "CUDA", "tensorrt"):
        assert discovery.known_name(short) in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def test_every_argument_has_help_text() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) >= {"run", "plan", "providers", "report", "demo", "matrix"}
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"onnxmux {name}: {'/'.join(action.option_strings) or action.dest} has no help text"


def test_demo_validates_batch_and_says_weights_are_random(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--batch", "0"])
    assert exit_info.value.code == 2 and "--batch: must be at least 1, got 0" in capsys.readouterr().err
    code, out, _ = _cli("demo", "--batch", "2")
    assert code == 0 and "weights and images are random" in out


def test_run_prints_input_shapes_and_takes_shape_and_dim(cnn: Path, capsys) -> None:
    code, out, _ = _cli("run", str(cnn))
    assert code == 0 and "[1, 3, 32, 32]" in out
    assert "input 'image' axis 0: 'batch' dimension set to 1" in out
    code, out, _ = _cli("run", str(cnn), "--dim", "batch=3")
    assert code == 0 and "[3, 3, 32, 32]" in out and "[3, 10]" in out and "set to 1" not in out
    code, out, _ = _cli("run", str(cnn), "--shape", "image=2x3x32x32")
    assert code == 0 and "[2, 3, 32, 32]" in out and "[2, 10]" in out
    code, _, err = _cli("run", str(cnn), "--shape", "image=2x3x31x32")
    assert code == 2 and "--shape image: axis 2 is 32 in the model, 31 given" in err
    code, _, err = _cli("run", str(cnn), "--dim", "batsh=2")
    assert code == 2 and "--dim batsh: the model has no symbolic dimension of that name (it has: batch)" in err
    with pytest.raises(SystemExit):
        main(["run", str(cnn), "--repeat", "0"])
    assert "--repeat: must be at least 1, got 0" in capsys.readouterr().err


def test_plan_groups_declined_nodes_by_reason(cnn: Path) -> None:
    code, out, _ = _cli("plan", str(cnn), "--providers", "heavy-device,cpu")
    assert code == 0
    row = next(line for line in out.splitlines() if "no kernel for this operator" in line)
    assert re.search(r"HeavyOpsDeviceExecutionProvider\s*│\s*no kernel for this operator\s*│\s*6\s*│", row), row
    code, out, _ = _cli("plan", str(cnn), "--providers", "heavy-device,cpu", "--verbose")
    assert code == 0 and all(name in out for name in ("relu1", "pool1", "relu2", "gap", "flatten", "softmax"))


def test_no_runtime_warning_from_kernels(tmp_path: Path) -> None:
    model = tmp_path / "log_div.onnx"
    onnx.save(single_node_model("Div", [("a", TensorProto.FLOAT, [3]), ("b", TensorProto.FLOAT, [3])], [("y", TensorProto.FLOAT, [3])]), model)
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.array([0.0, 1.0, -1.0], np.float32))
    code, out, err = _cli("run", str(model), "--input", f"a={zeros}", "--input", f"b={zeros}")
    assert code == 0 and err == "" and "nan" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = single_node_model("Log", [("x", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [2])])
        (y,) = onnxmux.InferenceSession(log.SerializeToString()).run(None, {"x": np.array([0.0, -1.0], np.float32)})
    assert np.isneginf(y[0]) and np.isnan(y[1])
