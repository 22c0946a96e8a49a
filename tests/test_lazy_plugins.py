"""Plugins are imported lazily: a session imports only the providers it names; listing imports
all, each with a time limit; ONNXMUX_DISABLE_PLUGINS takes 1/true/yes and 0/false/no."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SLOW_PLUGIN = """
import time, pathlib
pathlib.Path(__file__).with_name("imported.flag").write_text("yes")
time.sleep({seconds})
import onnxmux
class Provider(onnxmux.KernelProvider):
    name = "SlowExecutionProvider"
    registry = onnxmux.KernelRegistry()
"""


def _slow_plugin(tmp_path: Path, seconds: float) -> dict:
    """A distribution on sys.path registering ``slowplugin``, whose import sleeps ``seconds``."""
    dist = tmp_path / "slowplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slowplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[onnxmux.providers]\nSlowExecutionProvider = slowplugin:Provider\n")
    (tmp_path / "slowplugin.py").write_text(SLOW_PLUGIN.format(seconds=seconds))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "250"
    env.pop("ONNXMUX_DISABLE_PLUGINS", None)
    return env


SESSION = textwrap.dedent(
    """
    import onnxmux
    from onnx import helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", 1, [1])], [helper.make_tensor_value_info("y", 1, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    s = onnxmux.InferenceSession(m, providers=["CPUExecutionProvider"])
    print(s.get_providers(), onnxmux.get_all_providers())
    """
)


def test_a_cpu_session_does_not_import_other_plugins(tmp_path: Path) -> None:
    env = _slow_plugin(tmp_path, 0)
    out = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CPUExecutionProvider" in out.stdout
    assert "SlowExecutionProvider" in out.stdout  # listed by name, not imported
    assert not (tmp_path / "imported.flag").exists(), "the CPU-only session imported an unrelated plugin"


def test_listing_gives_up_on_a_plugin_whose_import_hangs(tmp_path: Path) -> None:
    env = _slow_plugin(tmp_path, 600)
    env["ONNXMUX_PLUGIN_IMPORT_TIMEOUT"] = "1"
    out = subprocess.run([sys.executable, "-m", "onnxmux.cli", "providers"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "SlowExecutionProvider" in out.stdout and "import timed out" in out.stdout
    assert "CPUExecutionProvider" in out.stdout


@pytest.mark.parametrize(
    "value, disabled, warns",
    [("1", True, False), ("TRUE", True, False), ("yes", True, False), ("0", False, False), ("false", False, False),
     ("no", False, False), ("", False, False), ("maybe", False, True)],
)
def test_disable_plugins_values(monkeypatch, value: str, disabled: bool, warns: bool) -> None:
    from onnxmux.core import discovery

    monkeypatch.setenv("ONNXMUX_DISABLE_PLUGINS", value)
    if warns:
        with pytest.warns(UserWarning, match="ONNXMUX_DISABLE_PLUGINS"):
            assert discovery.plugins_disabled() is disabled
    else:
        assert discovery.plugins_disabled() is disabled
