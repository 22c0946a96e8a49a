"""Session creation with OpenVINO, compiling every time or loading a saved EP context model.

Usage::

    python benchmarks/bench_epcontext.py [--model resnet18] [--creations 7] [--embed 1] [--folder DIR]

Copies the model (exported and cached by ``benchmarks/models.py``) into ``--folder``, creates
one session with ``ep.context_enable`` = "1" (writing ``<model>_ctx.onnx``), then times
``--creations`` session creations of the original model and of the context model, interleaved,
and prints the median of each, and the largest output difference between the two.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import onnxmux

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import models  # noqa: E402


def _create(path: Path, options: onnxmux.SessionOptions | None = None) -> tuple[float, onnxmux.InferenceSession]:
    start = time.perf_counter()
    session = onnxmux.InferenceSession(str(path), options, providers=["openvino", "cpu"])
    return time.perf_counter() - start, session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", choices=sorted(models.MODELS))
    parser.add_argument("--creations", type=int, default=7)
    parser.add_argument("--embed", default="1", choices=["0", "1"])
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="onnxmux-epctx-"))
    source = models.MODELS[args.model]("dynamo")
    for file in source.parent.glob(source.name + "*"):  # the model and its external data
        shutil.copy(file, folder / file.name)
    model = folder / source.name
    options = onnxmux.SessionOptions()
    options.add_session_config_entry("ep.context_enable", "1")
    options.add_session_config_entry("ep.context_embed_mode", args.embed)
    _, first = _create(model, options)
    context = model.with_name(f"{model.stem}_ctx.onnx")
    compile_times, load_times = [], []
    for _ in range(args.creations):
        seconds, plain = _create(model)
        compile_times.append(seconds)
        seconds, loaded = _create(context)
        load_times.append(seconds)
    feeds = {}
    rng = np.random.default_rng(0)
    for arg in plain.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in arg.shape]
        feeds[arg.name] = rng.standard_normal(shape).astype(np.float32) if "float" in arg.type else np.ones(shape, np.int64)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(plain.run(None, feeds), loaded.run(None, feeds)))
    partitions = loaded.get_execution_plan().to_dict()["partitions"]
    print(f"model {args.model}: {context.name} has {len(partitions)} partitions, embed_mode {args.embed}")
    print(f"session creation, median of {args.creations}: compile {statistics.median(compile_times) * 1e3:.0f} ms, "
          f"from EP context {statistics.median(load_times) * 1e3:.0f} ms; largest output difference {diff:g}")
    del first


if __name__ == "__main__":
    main()
