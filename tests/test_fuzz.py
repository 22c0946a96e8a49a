"""Fuzzing: a few hundred mutated models (seeded, bounded) raise only onnxmux's errors; none hangs or
crashes the process. Cases run in batches, each batch in its own subprocess with a per-case watchdog."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEED = 16
CASES = 300
BATCH = 75
FUZZER = str(Path(__file__).with_name("fuzzing.py"))


def _batch(corpus: Path, first: int) -> tuple[dict[int, str], list[str]]:
    """Run one batch; returns each finished case's outcome line and the problems (hang, crash)."""
    done = subprocess.run([sys.executable, FUZZER, str(corpus), str(SEED), str(first), str(BATCH)],
                          capture_output=True, text=True, timeout=600)
    results: dict[int, str] = {}
    started = None
    problems = []
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "START":
            started = int(rest)
        elif kind == "RESULT":
            index, _, outcome = rest.partition(" ")
            results[int(index)] = outcome
        elif kind == "HANG":
            problems.append(f"case {rest} hung (seed {SEED})")
    if done.returncode != 0 and not problems:
        problems.append(f"case {started} crashed the process (seed {SEED}, exit {done.returncode}): {done.stderr[-500:]}")
    return results, problems


def test_fuzzed_models_raise_only_onnxmux_errors(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.pkl"
    built = subprocess.run([sys.executable, FUZZER, "--build", str(corpus)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = list(pool.map(lambda first: _batch(corpus, first), range(0, CASES, BATCH)))
    results = {i: outcome for found, _ in batches for i, outcome in found.items()}
    problems = [p for _, found in batches for p in found]
    raw = [f"case {i}: {o}" for i, o in sorted(results.items()) if o.startswith("raw")]
    counts = {kind: sum(o.startswith(kind) for o in results.values()) for kind in ("ok", "clean", "raw")}
    print(f"fuzz seed {SEED}: {len(results)} cases from {built.stdout.strip()} seed models: "
          f"{counts['clean']} clean errors, {counts['ok']} ran, {counts['raw']} raw exceptions, {len(problems)} hangs/crashes")
    assert not problems, problems
    assert not raw, raw
    assert len(results) == CASES
