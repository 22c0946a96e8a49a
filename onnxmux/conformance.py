"""ONNX's own node tests, run through the public API: the conformance figure of a provider list.

``python -m onnxmux.conformance [-k REGEX] [--providers a,b] [-v]`` prints each unexpected
result and the pass count. The cases are built in memory by onnx's test loader.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

import onnxmux

#: Ops whose outputs are random: checked on shape, dtype and seed reproducibility instead of values.
RANDOM_OPS = {"Bernoulli", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial"}
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-5


@dataclass
class CaseResult:
    """The outcome of one node test."""

    name: str
    passed: bool
    reason: str = ""
    #: The op types each provider ran (from the session's execution plan), when a session was made.
    placement: dict[str, set[str]] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def node_cases() -> tuple[Any, ...]:
    """Every node test case of the installed onnx (1,884 with onnx 1.23.2)."""
    from onnx.backend.test import loader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(loader.load_node_model_tests())


def load_expected_failures(path: Path) -> dict[str, str]:
    """``name  # reason`` lines of the expected-failure list, by case name."""
    expected: dict[str, str] = {}
    if not path.exists():
        return expected
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition("#")
        expected[name.strip()] = reason.strip()
    return expected


def to_value(item: Any) -> Any:
    """A test case's input or output as a session takes or gives it (tensors as arrays, sequences as lists)."""
    if isinstance(item, onnx.TensorProto):
        return numpy_helper.to_array(item)
    if isinstance(item, list):
        return [to_value(x) for x in item]
    return item


def run_case(case: Any, providers: Sequence[Any], options: onnxmux.SessionOptions | None = None) -> CaseResult:
    """Run one case on ``providers`` (with session ``options``) and compare every output with the expected one."""
    model = case.model
    initializers = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in initializers]
    output_names = [o.name for o in model.graph.output]
    random_case = any(n.op_type in RANDOM_OPS for n in model.graph.node)
    rtol = max(DEFAULT_RTOL, case.rtol)
    atol = max(DEFAULT_ATOL, case.atol)
    placement: dict[str, set[str]] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = onnxmux.InferenceSession(model.SerializeToString(), options, providers=list(providers))
            for node in session.get_execution_plan().nodes:
                placement.setdefault(node["provider"], set()).add(node["op_type"])
            for inputs, expected in case.data_sets:
                feed = {n: to_value(v) for n, v in zip(input_names, inputs)}
                got = session.run(None, feed)
                expected = [to_value(v) for v in expected]
                if random_case:
                    problem = _check_random(model, session, feed, got, expected, providers)
                else:
                    problem = first_mismatch(output_names, got, expected, rtol, atol)
                if problem:
                    return CaseResult(case.name, False, problem, placement)
    except Exception as exc:
        return CaseResult(case.name, False, f"{type(exc).__name__}: {str(exc)[:300]}", placement)
    return CaseResult(case.name, True, placement=placement)


def _check_random(model, session, feed, got, expected, providers) -> str | None:
    """Random outputs: same shape and dtype as expected; with a seed, identical across sessions."""
    for name, g, e in zip((o.name for o in model.graph.output), got, expected):
        if g.shape != e.shape or g.dtype != e.dtype:
            return f"output '{name}': shape/dtype {g.shape} {g.dtype}, expected {e.shape} {e.dtype}"
    seeded = any(a.name == "seed" for n in model.graph.node for a in n.attribute)
    if seeded:
        again = onnxmux.InferenceSession(model.SerializeToString(), providers=list(providers)).run(None, feed)
        if any(not np.array_equal(a, b) for a, b in zip(got, again)):
            return "seeded random op is not reproducible across sessions"
    return None


def first_mismatch(names: Sequence[str], got: Sequence[Any], expected: Sequence[Any], rtol: float, atol: float) -> str | None:
    """What differs between the first mismatching pair of outputs, or None when all match."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for name, g, e in zip(names, got, expected):
        problem = compare(g, e, rtol, atol)
        if problem:
            return f"output '{name}': {problem}"
    return None


def compare(got: Any, expected: Any, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``expected`` (arrays, lists, dicts, None), else what differs."""
    if expected is None:
        return None if got is None else f"expected None, got {type(got).__name__}"
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return f"expected a list of {len(expected)}, got {type(got).__name__} of {len(got) if hasattr(got, '__len__') else '?'}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol, atol)
            if problem:
                return f"[{i}] {problem}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return "dict keys differ"
        for key in expected:
            problem = compare(got[key], expected[key], rtol, atol)
            if problem:
                return f"[{key!r}] {problem}"
        return None
    expected = np.asarray(expected)
    if not isinstance(got, (np.ndarray, np.generic)):
        return f"expected an array, got {type(got).__name__}"
    got = np.asarray(got)
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype}, expected {expected.dtype}"
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if expected.dtype == object or expected.dtype.kind in "biuSUO":
        return None if np.array_equal(got, expected) else "values differ"
    g = got.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    e = expected.astype(g.dtype)
    if np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
        return None
    diff = np.abs(g - e)
    diff = np.where(np.isnan(diff), np.inf, diff)
    return f"values differ (max abs diff {np.max(diff):.3g})"


def run_suite(pattern: str | None, providers: Sequence[Any], options: onnxmux.SessionOptions | None = None) -> list[CaseResult]:
    """Run every case whose name matches ``pattern``."""
    return [run_case(c, providers, options) for c in select_cases(pattern)]


def select_cases(pattern: str | None) -> list[Any]:
    """The node test cases whose name matches ``pattern`` (all when None)."""
    regex = re.compile(pattern) if pattern else None
    return [c for c in node_cases() if regex is None or regex.search(c.name)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: print unexpected results and the pass count."""
    parser = argparse.ArgumentParser(prog="python -m onnxmux.conformance", description=__doc__)
    parser.add_argument("-k", dest="pattern", help="regular expression selecting case names")
    parser.add_argument("--providers", default="cpu", help="comma-separated provider list")
    parser.add_argument("--expected", type=Path, default=Path("tests/expected_failures.txt"))
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure, expected ones too")
    args = parser.parse_args(argv)
    providers = [p for p in args.providers.split(",") if p]
    expected = load_expected_failures(args.expected)
    start = time.perf_counter()
    results = run_suite(args.pattern, providers)
    passed = sum(r.passed for r in results)
    unexpected = 0
    for r in results:
        if not r.passed and (args.verbose or r.name not in expected):
            print(f"FAIL {r.name}: {r.reason}")
        if r.passed and r.name in expected and args.verbose:
            print(f"XPASS {r.name}")
        unexpected += (not r.passed) and r.name not in expected
    print(f"{passed} passed, {len(results) - passed} failed ({unexpected} unexpected) "
          f"of {len(results)} node tests on {','.join(providers)} in {time.perf_counter() - start:.1f}s")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
