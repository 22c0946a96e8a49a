"""onnxmux's CUDA provider against PyTorch eager on the same GPU: ResNet-18, a BERT-style encoder
and a GPT-2-style decoder, with and without ``enable_cuda_graph``.

Each runner takes host (numpy) inputs and returns host outputs, so all three pay the same copies:
onnxmux ``[cuda, cpu]``, the same with ``enable_cuda_graph``, and the torch module on the GPU
(``torch.from_numpy(x).cuda()`` in, ``.cpu()`` out, under ``inference_mode``). Runs are
interleaved (``benchmarks.common.interleaved_times``) and medians reported. Besides timings, each
result records where nodes ran, the plan's device copies against the transfers one run makes,
whether a CUDA graph was captured (or why not), and the largest difference from torch's output.

``python benchmarks/bench_cuda.py [--rounds N] [--json FILE]`` (needs a GPU, CuPy and torch with CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxmux
from benchmarks import common, decoder, models
from onnxmux.providers.cuda.graphs import CUDAGraphPlan

CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Case:
    """One model at one input size."""

    model: str
    batch: int
    seq: int = 0

    @property
    def label(self) -> str:
        return f"{self.model} b{self.batch}" + (f" s{self.seq}" if self.seq else "")


CASES = (Case("resnet18", 1), Case("resnet18", 32), Case("bert", 8, 128), Case("gpt2", 1, 128))


def model_path(name: str) -> Path:
    """The cached dynamo export of a model (exported on first use)."""
    return decoder.gpt2() if name == "gpt2" else models.MODELS[name]("dynamo")


def feeds_for(case: Case) -> dict[str, np.ndarray]:
    """Seeded inputs of a case."""
    if case.model == "gpt2":
        return decoder.make_feeds(case.batch, case.seq)
    return common.make_feeds(case.model, case.batch, case.seq)


def torch_runner(case: Case, feeds: dict[str, np.ndarray]) -> Callable[[], np.ndarray]:
    """The case's torch module on the GPU, host inputs in and host output out."""
    import torch

    build = {"resnet18": models._build_resnet18, "bert": models._build_bert, "gpt2": decoder.build_gpt2}[case.model]
    module = build().cuda().eval()
    arrays = list(feeds.values())

    def run() -> np.ndarray:
        with torch.inference_mode():
            return module(*[torch.from_numpy(a).cuda() for a in arrays]).cpu().numpy()

    return run


def graph_status(session: onnxmux.InferenceSession) -> str:
    """Whether the session's plan replays a captured CUDA graph, or why not."""
    plan = session._plan  # the session's plan, wrapped by the provider
    if not isinstance(plan, CUDAGraphPlan):
        return "not enabled"
    if plan.blocker is not None:
        return f"not used: {plan.blocker}"
    states = list(plan.graphs.values())
    if states and all(not isinstance(s, str) for s in states):
        return "captured"
    return "not used: " + "; ".join(s for s in states if isinstance(s, str)) if states else "not captured yet"


def placement(session: onnxmux.InferenceSession, run: Callable[[], Any]) -> dict[str, Any]:
    """CPU nodes, plan copies, and the host transfers one run makes (they should be equal)."""
    plan = session.get_execution_plan()
    runtime = next(p.runtime for p in session._providers if p.name == CUDA)
    before = runtime.uploads + runtime.downloads
    run()
    return {
        "cpu_nodes": sum(n["provider"] != CUDA for n in plan.nodes),
        "nodes": len(plan.nodes),
        "copies": len(plan.copies),
        "transfers_per_run": runtime.uploads + runtime.downloads - before,
    }


def bench_case(case: Case, warmup: int, rounds: int) -> dict[str, Any]:
    """Timings and checks of one case."""
    path = str(model_path(case.model))
    feeds = feeds_for(case)
    plain = onnxmux.InferenceSession(path, providers=["cuda", "cpu"])
    graphed = onnxmux.InferenceSession(path, providers=[("cuda", {"enable_cuda_graph": "1"}), "cpu"])
    eager = torch_runner(case, feeds)
    runners = {
        "onnxmux": lambda: plain.run(None, feeds)[0],
        "onnxmux_graph": lambda: graphed.run(None, feeds)[0],
        "torch": eager,
    }
    expected = eager()
    result: dict[str, Any] = {"case": case.label, **placement(plain, runners["onnxmux"])}
    result["max_diff"] = max(float(np.abs(runners[r]() - expected).max()) for r in ("onnxmux", "onnxmux_graph"))
    times = common.interleaved_times(runners, warmup, rounds)
    common.add_timings(result, times, ("onnxmux", "torch"), minimums=False)
    result["graph_ratio"] = result["onnxmux_graph_median_ms"] / result["torch_median_ms"]
    result["graph"] = graph_status(graphed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for case in CASES:
        try:
            results.append(bench_case(case, args.warmup, args.rounds))
        except Exception as exc:
            results.append({"case": case.label, "error": common.error_text(exc)})
        print(json.dumps(results[-1]))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
