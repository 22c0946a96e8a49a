"""An ordinary onnxruntime program, with nothing onnxmux-specific in it.

Run it on onnxruntime with ``python examples/onnxruntime_program.py`` and on onnxmux with
``python -m onnxmux.compat examples/onnxruntime_program.py``: the printed results match.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument


def build_model(path: Path) -> None:
    """A two-layer perceptron passing a string tag through (weights in an external data file),
    and the same without the strings (onnxruntime binds no string tensors)."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("ArgMax", ["probs"], ["best"], axis=1, keepdims=0),
        helper.make_node("Identity", ["tag"], ["tag_out"]),
    ]
    outputs = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
        helper.make_tensor_value_info("best", TensorProto.INT64, ["batch"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("tag", TensorProto.STRING, ["batch"]),
        ],
        outputs + [helper.make_tensor_value_info("tag_out", TensorProto.STRING, ["batch"])],
        [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    numbers = helper.make_graph(nodes[:5], "numbers", graph.input[:1], outputs, [w1, b1, w2])
    numbers_model = helper.make_model(numbers, opset_imports=[helper.make_opsetid("", 17)])
    numbers_model.ir_version = 8
    onnx.save(numbers_model, str(path.parent / "numbers.onnx"))


def show(label: str, value) -> None:
    array = np.asarray(value)
    if array.dtype.kind in "fc":
        array = np.round(array.astype(np.float64), 4)
    print(f"{label}: {array.tolist()}")


def main() -> int:
    folder = Path(tempfile.mkdtemp())
    path = folder / "mlp.onnx"
    build_model(path)

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(folder / "mlp.optimized.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    print("inputs:", [(i.name, i.shape, i.type) for i in session.get_inputs()])
    print("outputs:", [(o.name, o.shape, o.type) for o in session.get_outputs()])

    x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    probs, best, tags = session.run(None, {"x": x, "tag": np.array(["a", "b", "c"])})
    show("probs", probs)
    show("best", best)
    print("tags:", list(tags))

    (best_from_lists,) = session.run(["best"], {"x": x.tolist(), "tag": ["p", "q", "r"]})
    show("best from lists", best_from_lists)

    value = ort.OrtValue.ortvalue_from_numpy(x)
    print("ortvalue:", value.shape(), value.data_type(), value.device_name())
    numbers_only = ort.InferenceSession(str(folder / "numbers.onnx"), providers=["CPUExecutionProvider"])
    binding = numbers_only.io_binding()
    binding.bind_ortvalue_input("x", value)
    binding.bind_output("probs")
    binding.bind_output("best")
    numbers_only.run_with_iobinding(binding)
    probs_bound, best_bound = binding.copy_outputs_to_cpu()
    show("bound probs", probs_bound)
    show("bound best", best_bound)
    (best_value,) = numbers_only.run_with_ort_values(["best"], {"x": value})
    show("best from ort values", best_value.numpy())

    for feed in ({"x": x.astype(np.float64), "tag": np.array(["a", "b", "c"])}, {"tag": np.array(["a"])}):
        try:
            session.run(None, feed)
        except (InvalidArgument, ValueError):
            print("caught a bad feed")
        except Fail:
            print("caught a failure")

    reloaded = ort.InferenceSession(str(folder / "mlp.optimized.onnx"), providers=["CPUExecutionProvider"])
    show("optimized model probs", reloaded.run(["probs"], {"x": x, "tag": np.array(["a", "b", "c"])})[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
