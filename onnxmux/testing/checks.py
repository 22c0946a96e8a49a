"""Checks of one provider on given models; each returns a list of problems, one line each, naming the fault."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import onnx

import onnxmux
from onnxmux.cli.common import random_input
from onnxmux.conformance import compare
from onnxmux.core import discovery
from onnxmux.core.provider import CompileProvider, KernelProvider

CPU = "CPUExecutionProvider"
#: The session config entry that makes the runtime check every node's outputs against its static types.
CHECK_OUTPUTS_ENTRY = "session.check_provider_outputs"
#: Plugin hooks whose exceptions the runtime turns into a fallback to the next provider, by provider kind
#: (a raising availability check makes the provider unavailable, so the next one runs its nodes).
FALLBACK_HOOKS: dict[type, tuple[str, ...]] = {
    CompileProvider: ("unavailable_reason", "claim", "compile"),
    KernelProvider: ("unavailable_reason", "kernel_for"),
}
RTOL, ATOL = 1e-4, 1e-5


def kit_options(optimize: bool = True) -> onnxmux.SessionOptions:
    """Session options for every kit session: the runtime's per-node output check is on."""
    options = onnxmux.SessionOptions()
    options.add_session_config_entry(CHECK_OUTPUTS_ENTRY, "1")
    if not optimize:  # keep every value of the model, to compare them one by one
        options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def random_feeds(session: onnxmux.InferenceSession, seed: int) -> dict[str, np.ndarray]:
    """Random inputs of the declared types (symbolic dimensions 1)."""
    rng = np.random.default_rng(seed)
    return {arg.name: random_input(arg, rng) for arg in session.get_inputs()}


def check_copies(provider: str, model: onnx.ModelProto) -> list[str]:
    """Every copy in the plan of ``[provider, cpu]`` must cross between two different memories."""
    plan = onnxmux.InferenceSession(model.SerializeToString(), kit_options(), providers=[provider, CPU]).get_execution_plan()
    problems = []
    for copy in plan.copies:
        if copy.source == copy.target or (_is_host(copy.source) and _is_host(copy.target)):
            problems.append(
                f"{provider}: copy of '{copy.value}' from '{copy.source}' to '{copy.target}' is not a device crossing "
                f"(a provider working on host memory must declare device 'cpu')"
            )
    return problems


def _is_host(device: str) -> bool:
    return device.split(":")[0].lower() in ("cpu", "host")


def with_every_value_as_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every typed node output also a graph output, so each node's result can be compared."""
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in present and name in typed and typed[name].type.HasField("tensor_type"):
                exposed.graph.output.append(typed[name])
                present.add(name)
    return exposed


def check_against_cpu(provider: str, model: onnx.ModelProto, seed: int = 0) -> list[str]:
    """Every node output of ``model`` on ``[provider, cpu]`` must equal the CPU provider's: dtype, shape, values."""
    exposed = with_every_value_as_output(model).SerializeToString()
    reference = onnxmux.InferenceSession(exposed, kit_options(optimize=False), providers=[CPU])
    feeds = random_feeds(reference, seed)
    try:
        session = onnxmux.InferenceSession(exposed, kit_options(optimize=False), providers=[provider, CPU])
        got = session.run(None, feeds)
    except onnxmux.OnnxMuxError as exc:
        return [f"{provider}: {model.graph.name}: {type(exc).__name__}: {exc}"]
    producer = {out: node for node in model.graph.node for out in node.output}
    placed = {n["name"]: n["provider"] for n in session.get_execution_plan().nodes}
    problems = []
    for arg, g, e in zip(session.get_outputs(), got, reference.run(None, feeds)):
        problem = compare(g, e, RTOL, ATOL)
        if problem:
            node = producer.get(arg.name)
            where = f"node '{node.name}' ({node.op_type}) on {placed.get(node.name, '?')}" if node is not None else "graph output"
            problems.append(f"{provider}: {where}: output '{arg.name}' against the CPU provider: {problem}")
    return problems


def check_hook_fallback(provider: str, model: onnx.ModelProto) -> list[str]:
    """With each fallback hook of the provider raising, the session must load, warn naming the provider,
    and compute what the CPU provider computes."""
    entry = discovery.find(provider)
    cls = entry.cls if entry is not None else None
    if cls is None:
        return [f"{provider}: not found"]
    reference = onnxmux.InferenceSession(model.SerializeToString(), providers=[CPU])
    feeds = random_feeds(reference, 0)
    expected = reference.run(None, feeds)
    problems = []
    for hook in next((hooks for kind, hooks in FALLBACK_HOOKS.items() if issubclass(cls, kind)), ()):
        faulty = _raising(cls, hook)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session = onnxmux.InferenceSession(model.SerializeToString(), kit_options(), providers=[faulty.name, CPU])
            got = session.run(None, feeds)
        except Exception as exc:
            problems.append(f"{provider}: with '{hook}' raising, session creation failed instead of falling back: {type(exc).__name__}: {exc}")
            continue
        if not any(faulty.name in str(w.message) for w in caught):
            problems.append(f"{provider}: with '{hook}' raising, no warning named the provider")
        for arg, g, e in zip(session.get_outputs(), got, expected):
            problem = compare(g, e, RTOL, ATOL)
            if problem:
                problems.append(f"{provider}: with '{hook}' raising, output '{arg.name}' differs from the CPU provider's: {problem}")
    return problems


def _raising(cls: type, hook: str) -> type:
    """A subclass of ``cls`` whose ``hook`` raises, registered under its own name."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"fault injected into {hook}")

    faulty = type(f"{cls.__name__}With{hook.title()}Fault", (cls,), {hook: fail, "name": f"{cls.name}[{hook} raises]", "aliases": ()})
    onnxmux.register_provider(faulty)
    return faulty


def check_concurrency(provider: str, model: onnx.ModelProto, threads: int = 4, runs: int = 4) -> list[str]:
    """``threads`` threads each running the session ``runs`` times on their own inputs must get what
    single-threaded runs of the same session get."""
    session = onnxmux.InferenceSession(model.SerializeToString(), kit_options(), providers=[provider, CPU])
    feeds = [random_feeds(session, seed) for seed in range(threads * runs)]
    expected = [session.run(None, f) for f in feeds]

    def worker(first: int) -> list[tuple[int, Any]]:
        return [(i, _run_or_error(session, feeds[i])) for i in range(first, first + runs)]

    with ThreadPoolExecutor(threads) as pool:
        outcomes = [item for chunk in pool.map(worker, range(0, threads * runs, runs)) for item in chunk]
    problems = []
    for i, got in outcomes:
        if isinstance(got, Exception):
            problems.append(f"{provider}: concurrent run {i} raised {type(got).__name__}: {got}")
            continue
        for arg, g, e in zip(session.get_outputs(), got, expected[i]):
            problem = compare(g, e, RTOL, ATOL)
            if problem:
                problems.append(f"{provider}: concurrent run {i} ({threads} threads x {runs} runs), output '{arg.name}' "
                                f"differs from the single-threaded run: {problem}")
    return problems


def _run_or_error(session: onnxmux.InferenceSession, feed: dict) -> Any:
    try:
        return session.run(None, feed)
    except Exception as exc:  # reported as a problem of the concurrent run
        return exc


CHECKS: dict[str, Callable[[str, onnx.ModelProto], list[str]]] = {
    "copies": check_copies,
    "against_cpu": check_against_cpu,
    "hook_fallback": check_hook_fallback,
    "concurrency": check_concurrency,
}
