"""Peak resident memory of one runtime on one model, imports included, in a fresh process.

Usage (``benchmarks/run.py`` starts it once per runtime and model)::

    python benchmarks/peak_memory.py {onnxmux,onnxruntime} MODEL.onnx FEEDS.npz THREADS

It imports NumPy and the runtime, creates a CPU session, runs it once on the feeds and prints
``{"peak_rss_mb": ..., "imports_rss_mb": ...}``: the process's peak RSS at the end and after
the imports alone: ``VmHWM`` of ``/proc/self/status`` on Linux (``ru_maxrss`` is not used there:
it carries the parent's peak across ``fork``/``exec``), ``ru_maxrss`` elsewhere.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(runtime: str, model: str, feeds_path: str, threads: int) -> None:
    """Measure and print (see the module docstring)."""
    import numpy as np

    if runtime == "onnxmux":
        import onnxmux as ort

        providers = ["cpu"]
    else:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
    imports = peak_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=providers)
    with np.load(feeds_path) as stored:
        feeds = dict(stored)
    session.run(None, feeds)
    print(json.dumps({"peak_rss_mb": peak_mb(), "imports_rss_mb": imports}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
