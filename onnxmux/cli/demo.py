"""``onnxmux demo``: build a small CNN with onnx.helper, run it, and print what it computed."""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from onnxmux.cli.common import positive_int, provider_list
from onnxmux.core.session import InferenceSession

CLASSES = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("demo", help="build and run a small CNN (the out-of-the-box check)")
    p.add_argument("--providers", help="comma-separated providers in priority order (default: cpu)")
    p.add_argument("--batch", type=positive_int, default=4, help="images per run (default 4)")


def build_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool, Conv-Relu, global pooling, Gemm and Softmax on 3x32x32 images."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [
        weight("w1", 16, 3, 3, 3), weight("b1", 16),
        numpy_helper.from_array(np.ones(16, np.float32), "bn_scale"),
        weight("bn_bias", 16), weight("bn_mean", 16),
        numpy_helper.from_array(np.full(16, 1.5, np.float32), "bn_var"),
        weight("w2", 32, 16, 3, 3), weight("b2", 32),
        weight("fc_w", CLASSES, 32), weight("fc_b", CLASSES),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxmux-demo")
    onnx.checker.check_model(model)
    return model


def main(args: argparse.Namespace) -> int:
    """Run the demo CNN on random images and print the predicted classes."""
    model = build_cnn()
    session = InferenceSession(model.SerializeToString(), providers=provider_list(args.providers))
    images = np.random.default_rng(1).standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    session.run(None, {"image": images})  # warm-up
    start = time.perf_counter()
    (probabilities,) = session.run(None, {"image": images})
    elapsed = time.perf_counter() - start
    console = Console()
    console.print(f"demo CNN ({len(model.graph.node)} nodes) on {', '.join(session.get_providers())}")
    console.print("its weights and images are random, so the predicted classes only show that the model runs")
    table = Table("image", "predicted class", "probability", "row sum")
    for i, row in enumerate(probabilities):
        table.add_row(str(i), str(int(row.argmax())), f"{row.max():.4f}", f"{row.sum():.4f}")
    console.print(table)
    console.print(f"batch of {args.batch} in {elapsed * 1000:.2f} ms")
    return 0
