"""A seeded, bounded model fuzzer: mutated models from small hand-built models and ONNX node tests.

``python tests/fuzzing.py --build CORPUS`` writes the seed models; ``python tests/fuzzing.py CORPUS
SEED FIRST COUNT`` runs cases FIRST..FIRST+COUNT-1 in this process
and prints one line per case: ``START i`` before it, ``RESULT i ok|clean|raw detail`` after it. A
watchdog prints ``HANG i`` and exits when one case outlives CASE_TIMEOUT_S, so the parent can tell
hangs, crashes and raw exceptions apart while running many cases per subprocess.
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
import random
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Node-test modules whose cases seed the corpus (importing one runs only its own exports).
NODE_MODULES = (
    "relu", "gemm", "conv", "reshape", "concat", "gather", "loop", "if_", "slice", "softmax", "lstm", "resize",
    "constantofshape", "expand", "tile", "topk", "cast", "split", "where", "scan", "transpose",
    "regex_full_match", "pad", "maxpool", "matmul",
)
CASE_TIMEOUT_S = 20.0
#: Limits every fuzzed session runs under, so no case can take the machine's memory or time.
SESSION_CONFIG = {"session.max_tensor_bytes": str(64 << 20), "session.run_timeout_ms": "5000"}
OPS = ("Relu", "Add", "Gemm", "Conv", "Reshape", "Concat", "Gather", "Loop", "If", "Slice", "Cast", "Expand",
       "Tile", "TopK", "Split", "Where", "Transpose", "Pad", "MaxPool", "MatMul", "ConstantOfShape", "Range")


def build_corpus(path: Path) -> int:
    """Write the seed models (name, ModelProto bytes, feeds) to ``path``; returns how many."""
    from helpers import affine_relu_model

    from onnx.backend.test.case import node

    seeds = [("affine_relu", affine_relu_model(), {"x": np.ones((2, 3), np.float32)})]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in NODE_MODULES:
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    for case in node._NodeTestCases:
        inputs = case.data_sets[0][0] if case.data_sets else []
        names = [i.name for i in case.model.graph.input]
        feeds = {n: v for n, v in zip(names, inputs) if isinstance(v, np.ndarray)}
        seeds.append((case.name, case.model, feeds))
    path.write_bytes(pickle.dumps([(n, m.SerializeToString(), f) for n, m, f in seeds]))
    return len(seeds)


# -- mutations: each edits a ModelProto in place -------------------------------------------------
def _nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    found = []

    def walk(graph: onnx.GraphProto) -> None:
        for n in graph.node:
            found.append(n)
            for a in n.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    walk(g)

    walk(model.graph)
    return found


def _tensors(model: onnx.ModelProto) -> list[TensorProto]:
    tensors = list(model.graph.initializer)
    for n in _nodes(model):
        tensors += [a.t for a in n.attribute if a.HasField("t")]
    return tensors


def _attr_retype(rng: random.Random, model: onnx.ModelProto) -> None:
    attrs = [a for n in _nodes(model) for a in n.attribute if not a.HasField("g")]
    if attrs:
        attr = rng.choice(attrs)
        name = attr.name
        attr.CopyFrom(rng.choice([helper.make_attribute(name, "x"), helper.make_attribute(name, [-1, 7]),
                                  helper.make_attribute(name, 2.5), helper.make_attribute(name, -3),
                                  helper.make_attribute(name, 2**40), helper.make_attribute(name, ["a"])]))


def _attr_duplicate(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = [n for n in _nodes(model) if n.attribute]
    if nodes:
        node = rng.choice(nodes)
        node.attribute.append(copy.deepcopy(rng.choice(node.attribute)))


def _attr_drop(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = [n for n in _nodes(model) if n.attribute]
    if nodes:
        node = rng.choice(nodes)
        del node.attribute[rng.randrange(len(node.attribute))]


def _inputs_edit(rng: random.Random, model: onnx.ModelProto) -> None:
    node = rng.choice(_nodes(model))
    choice = rng.randrange(3)
    if choice == 0 and node.input:
        del node.input[-1]
    elif choice == 1:
        node.input.append(rng.choice(list(node.input) or ["x"]))
    elif node.input:
        node.input[rng.randrange(len(node.input))] = "nowhere"


def _tensor_dims(rng: random.Random, model: onnx.ModelProto) -> None:
    tensors = _tensors(model)
    if tensors:
        tensor = rng.choice(tensors)
        dims = rng.choice([[-1], [10**6, 10**6], list(tensor.dims) + [2], [0], list(tensor.dims)[:-1]])
        del tensor.dims[:]
        tensor.dims.extend(dims)


def _tensor_data(rng: random.Random, model: onnx.ModelProto) -> None:
    tensors = _tensors(model)
    if tensors:
        tensor = rng.choice(tensors)
        choice = rng.randrange(4)
        if choice == 0:
            tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
        elif choice == 1:
            tensor.data_type = rng.randrange(0, 32)
        elif choice == 2:
            tensor.int32_data.extend([1, 2, 3])
        else:
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", rng.choice(["../../etc/passwd", "a\x00b", "/etc/hosts", "w.bin"])),
                               ("offset", rng.choice(["x", "-1", "99999999"]))):
                tensor.external_data.add(key=key, value=value)


def _graph_inputs(rng: random.Random, model: onnx.ModelProto) -> None:
    if model.graph.input:
        info = rng.choice(model.graph.input)
        tensor_type = info.type.tensor_type
        if rng.random() < 0.5:
            tensor_type.elem_type = rng.choice([1, 2, 6, 7, 9, 10, 11, 8])
        else:
            del tensor_type.shape.dim[:]
            for _ in range(rng.randrange(4)):
                tensor_type.shape.dim.add().dim_value = rng.choice([0, 1, 3])


def _structure(rng: random.Random, model: onnx.ModelProto) -> None:
    choice = rng.randrange(5)
    nodes = list(model.graph.node)
    if choice == 0:
        rng.shuffle(nodes)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    elif choice == 1:
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = rng.randrange(1, 26)
    elif choice == 2:
        rng.choice(_nodes(model)).op_type = rng.choice(OPS)
    elif choice == 3:
        model.ir_version = rng.choice([1, 3, 7, 12, 99])
    elif model.graph.output:
        model.graph.output[0].name = rng.choice(["nowhere", model.graph.input[0].name if model.graph.input else ""])


def _sparse(rng: random.Random, model: onnx.ModelProto) -> None:
    dims = rng.choice([[4], [2, 2], [10**5, 10**5], [-2]])
    indices = rng.choice([np.array([0, 9], np.int64), np.array([[0, 0], [1, 1]], np.int64), np.array([1], np.int64)])
    values = numpy_helper.from_array(np.ones(2, np.float32), rng.choice(["sp", *(t.name for t in model.graph.initializer)]))
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, numpy_helper.from_array(indices, "i"), dims))


MUTATIONS: tuple[Callable[[random.Random, onnx.ModelProto], None], ...] = (
    _attr_retype, _attr_duplicate, _attr_drop, _inputs_edit, _tensor_dims, _tensor_data, _graph_inputs,
    _structure, _sparse,
)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three mutations of a serialized model, or (one case in ten) flipped bytes."""
    if rng.random() < 0.1:
        flipped = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    model = onnx.ModelProto()
    model.ParseFromString(data)
    for _ in range(rng.randrange(1, 4)):
        if _nodes(model):
            rng.choice(MUTATIONS)(rng, model)
    return model.SerializeToString()


# -- running --------------------------------------------------------------------------------------
_DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32, "bool": np.bool_,
           "string": object, "float16": np.float16, "uint8": np.uint8, "int8": np.int8}


def feeds_for(session: Any, known: dict[str, np.ndarray], rng: random.Random) -> dict[str, Any]:
    """The seed's own inputs where they still fit the declared types, small random values otherwise."""
    feeds: dict[str, Any] = {}
    for arg in session.get_inputs():
        if arg.name in known:
            feeds[arg.name] = known[arg.name]
            continue
        kind = arg.type[arg.type.find("(") + 1 : arg.type.rfind(")")] if arg.type.startswith("tensor(") else None
        if kind is None:
            feeds[arg.name] = [] if arg.type.startswith("seq") else None
            continue
        shape = [d if isinstance(d, int) else 2 for d in (arg.shape or [])]
        dtype = _DTYPES.get(kind, np.float32)
        feeds[arg.name] = np.array(["a"] * int(np.prod(shape)), dtype=object).reshape(shape) if dtype is object else \
            (rng.random() * np.ones(shape)).astype(dtype)
    return feeds


def run_case(onnxmux: Any, seeds: list, seed: int, index: int) -> tuple[str, str]:
    """Build case ``index`` and run it: ("ok"|"clean"|"raw", detail)."""
    rng = random.Random(seed * 1_000_003 + index)
    name, data, feeds = seeds[rng.randrange(len(seeds))]
    options = onnxmux.SessionOptions()
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    try:
        session = onnxmux.InferenceSession(mutate(rng, data), options)
        session.run(None, feeds_for(session, feeds, rng))
    except onnxmux.OnnxMuxError as exc:
        return "clean", f"{name}: {type(exc).__name__}"
    except Exception as exc:  # the finding this fuzzer exists for
        return "raw", f"{name}: {type(exc).__name__}: {str(exc)[:300]}"
    return "ok", name


def main(argv: list[str]) -> None:
    if argv[0] == "--build":
        print(build_corpus(Path(argv[1])))
        return
    corpus, seed, first, count = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("onnxmux").setLevel(logging.CRITICAL)
    import onnxmux

    seeds = pickle.loads(corpus.read_bytes())
    current = {"index": None, "since": time.monotonic()}

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            if current["index"] is not None and time.monotonic() - current["since"] > CASE_TIMEOUT_S:
                print(f"HANG {current['index']}", flush=True)
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    for index in range(first, first + count):
        current["index"], current["since"] = index, time.monotonic()
        print(f"START {index}", flush=True)
        kind, detail = run_case(onnxmux, seeds, seed, index)
        print(f"RESULT {index} {kind} {detail}".replace("\n", " "), flush=True)
    current["index"] = None


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1:])
