"""onnxruntime's com.microsoft operators on the CPU provider match onnxruntime: single nodes with
random inputs, and transformer models that onnxruntime's own optimizer wrote."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxmux

ort = pytest.importorskip("onnxruntime")

F, I32, I64, U8 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8
MS = "com.microsoft"


#: Output element types other than float, by output name.
OUTPUT_TYPES = {"mask_index": I32}


def _node_model(op_type: str, inputs: list, outputs: list, domain: str = MS, **attrs) -> bytes:
    """A one-node model; inputs are (name, elem_type, array-or-None) with None marking an absent input."""
    node = helper.make_node(op_type, [n if a is not None else "" for n, _, a in inputs], outputs, domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "node",
        [helper.make_tensor_value_info(n, t, a.shape) for n, t, a in inputs if a is not None],
        [helper.make_tensor_value_info(o, OUTPUT_TYPES.get(o, F), None) for o in outputs if o],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def _check_node(op_type: str, inputs: list, outputs: list, domain: str = MS, atol: float = 1e-5, **attrs) -> None:
    model = _node_model(op_type, inputs, outputs, domain, **attrs)
    feeds = {n: a for n, _, a in inputs if a is not None}
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = onnxmux.InferenceSession(model).run(None, feeds)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=atol)


RNG = np.random.default_rng(0)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "attrs, a_shape, b_shape",
    [
        ({}, (2, 3, 4), (4, 5)),
        ({"alpha": 0.5, "transB": 1}, (2, 3, 4), (2, 5, 4)),
        ({"transA": 1}, (4, 3), (4, 5)),
        ({"transBatchA": 1}, (3, 2, 4), (2, 4, 5)),
        ({"transBatchB": 1, "transB": 1}, (2, 3, 4), (5, 2, 4)),
    ],
)
def test_fused_matmul(attrs, a_shape, b_shape) -> None:
    _check_node("FusedMatMul", [("A", F, _f(*a_shape)), ("B", F, _f(*b_shape))], ["Y"], **attrs)


@pytest.mark.parametrize(
    "activation, params",
    [("Relu", {}), ("LeakyRelu", {"activation_alpha": 0.2}), ("HardSigmoid", {"activation_alpha": 0.3, "activation_beta": 0.4})],
)
def test_fused_gemm(activation, params) -> None:
    inputs = [("A", F, _f(5, 4)), ("B", F, _f(3, 4)), ("C", F, _f(3))]
    _check_node("FusedGemm", inputs, ["Y"], activation=activation, transB=1, alpha=0.7, **params)


@pytest.mark.parametrize("z", [False, True])
def test_fused_conv(z) -> None:
    inputs = [("X", F, _f(1, 3, 6, 6)), ("W", F, _f(4, 3, 3, 3)), ("B", F, _f(4)), ("Z", F, _f(1, 4, 6, 6) if z else None)]
    _check_node("FusedConv", inputs, ["Y"], activation="Relu", pads=[1, 1, 1, 1])


@pytest.mark.parametrize(
    "op_type, inputs, attrs",
    [
        ("Gelu", [("X", F, _f(2, 3, 8))], {}),
        ("BiasGelu", [("A", F, _f(2, 3, 8)), ("B", F, _f(8))], {}),
        ("FastGelu", [("X", F, _f(2, 3, 8))], {}),
        ("FastGelu", [("X", F, _f(2, 3, 8)), ("bias", F, _f(8))], {}),
        ("QuickGelu", [("X", F, _f(2, 3, 8))], {}),
        ("QuickGelu", [("X", F, _f(2, 3, 8))], {"alpha": 1.2}),
    ],
)
def test_gelu_family(op_type, inputs, attrs) -> None:
    _check_node(op_type, inputs, ["Y"], **attrs)


@pytest.mark.parametrize("beta, bias", [(False, False), (True, True)])
def test_skip_layer_normalization(beta, bias) -> None:
    inputs = [("x", F, _f(2, 3, 8)), ("skip", F, _f(2, 3, 8)), ("gamma", F, _f(8)), ("beta", F, _f(8) if beta else None), ("bias", F, _f(8) if bias else None)]
    _check_node("SkipLayerNormalization", inputs, ["y", "mean", "inv_std", "sum"], epsilon=1e-5)


def test_skip_simplified_layer_normalization() -> None:
    inputs = [("x", F, _f(2, 3, 8)), ("skip", F, _f(3, 8)), ("gamma", F, _f(8)), ("bias", F, _f(8))]
    _check_node("SkipSimplifiedLayerNormalization", inputs, ["y", "", "inv_std", "sum"], epsilon=1e-6)


@pytest.mark.parametrize("axis", [-1, 1])
def test_simplified_layer_normalization(axis) -> None:
    inputs = [("x", F, _f(2, 3, 8)), ("scale", F, _f(*((8,) if axis == -1 else (3, 8))))]
    _check_node("SimplifiedLayerNormalization", inputs, ["y"], domain="", axis=axis, epsilon=1e-5)


@pytest.mark.parametrize("segments, mask", [(True, True), (False, False)])
def test_embed_layer_normalization(segments, mask) -> None:
    ids = RNG.integers(0, 20, (2, 5)).astype(np.int32)
    inputs = [
        ("ids", I32, ids),
        ("segment_ids", I32, RNG.integers(0, 2, (2, 5)).astype(np.int32) if segments else None),
        ("word", F, _f(20, 8)),
        ("position", F, _f(16, 8)),
        ("segment", F, _f(2, 8) if segments else None),
        ("gamma", F, _f(8)),
        ("beta", F, _f(8)),
        ("mask", I32, np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32) if mask else None),
    ]
    outputs = ["y", "mask_index", "sum"] if mask else ["y", "mask_index"]
    _check_node("EmbedLayerNormalization", inputs, outputs, epsilon=1e-12)


def _mask(kind: str, batch: int, seq: int, total: int) -> tuple[int, np.ndarray | None]:
    lengths = np.array([total, total - 2], np.int32)
    if kind == "lengths":
        return I32, lengths
    if kind == "raw":
        return I32, (np.arange(total)[None, :] < lengths[:, None]).astype(np.int32)
    if kind == "raw3d":
        return I32, RNG.integers(0, 2, (batch, seq, total)).astype(np.int32) | (np.arange(total) == 0)
    return I32, None


@pytest.mark.parametrize(
    "mask, unidirectional, past",
    [("none", 0, False), ("raw", 0, False), ("lengths", 0, False), ("none", 1, True), ("raw", 1, False), ("raw3d", 0, False)],
)
def test_attention(mask, unidirectional, past) -> None:
    batch, seq, hidden, heads, past_len = 2, 4, 8, 2, 3
    mask_type, mask_value = _mask(mask, batch, seq, seq + (past_len if past else 0))
    inputs = [
        ("x", F, _f(batch, seq, hidden)),
        ("w", F, _f(hidden, 3 * hidden)),
        ("b", F, _f(3 * hidden)),
        ("mask", mask_type, mask_value),
        ("past", F, _f(2, batch, heads, past_len, hidden // heads) if past else None),
    ]
    outputs = ["y", "present"] if past else ["y"]
    _check_node("Attention", inputs, outputs, num_heads=heads, unidirectional=unidirectional)


@pytest.mark.parametrize("layout", ["separate", "per_head_kv", "past"])
def test_multi_head_attention(layout) -> None:
    batch, seq, kv_seq, heads, size = 2, 3, 5, 2, 4
    hidden = heads * size
    names = ["query", "key", "value", "bias", "key_padding_mask", "attention_bias", "past_key", "past_value"]
    values: dict = {"query": _f(batch, seq, hidden)}
    outputs = ["y"]
    if layout == "separate":
        values.update(key=_f(batch, kv_seq, hidden), value=_f(batch, kv_seq, hidden), bias=_f(3 * hidden))
        values["key_padding_mask"] = np.array([[1] * kv_seq, [1] * (kv_seq - 2) + [0, 0]], np.int32)
    elif layout == "per_head_kv":
        values.update(key=_f(batch, heads, kv_seq, size), value=_f(batch, heads, kv_seq, size))
        values["attention_bias"] = _f(1, heads, seq, kv_seq)
    else:
        values.update(key=_f(batch, seq, hidden), value=_f(batch, seq, hidden))
        values.update(past_key=_f(batch, heads, 2, size), past_value=_f(batch, heads, 2, size))
        outputs = ["y", "present_key", "present_value"]
    types = {"key_padding_mask": I32}
    inputs = [(n, types.get(n, F), values.get(n)) for n in names]
    while inputs[-1][2] is None:
        inputs.pop()
    _check_node("MultiHeadAttention", inputs, outputs, num_heads=heads, unidirectional=int(layout == "past"))


@pytest.mark.parametrize("interleaved, rank, positions", [(0, 3, "ids"), (1, 3, "offset"), (0, 4, "ids")])
def test_rotary_embedding(interleaved, rank, positions) -> None:
    batch, seq, heads, size, max_seq = 2, 3, 2, 8, 10
    x = _f(batch, seq, heads * size) if rank == 3 else _f(batch, heads, seq, size)
    ids = RNG.integers(0, max_seq - seq, (batch, seq)).astype(np.int64) if positions == "ids" else np.array([2], np.int64)
    angles = np.arange(max_seq)[:, None] * (1e-2 ** (np.arange(size // 2) / (size // 2)))[None, :]
    inputs = [("x", F, x), ("position_ids", I64, ids), ("cos", F, np.cos(angles).astype(np.float32)), ("sin", F, np.sin(angles).astype(np.float32))]
    _check_node("RotaryEmbedding", inputs, ["y"], interleaved=interleaved)


@pytest.mark.parametrize("bits, zero_points, bias", [(4, None, False), (4, "packed", True), (4, "float", False), (8, "packed", False), (2, "packed", False)])
def test_matmul_nbits(bits, zero_points, bias) -> None:
    n, k, block = 6, 40, 16
    blocks = math.ceil(k / block)
    packed_b = RNG.integers(0, 256, (n, blocks, block * bits // 8)).astype(np.uint8)
    scales = RNG.uniform(0.01, 0.1, (n, blocks)).astype(np.float32)
    if zero_points == "packed":
        zp = RNG.integers(0, 256, (n, math.ceil(blocks * bits / 8))).astype(np.uint8)
    elif zero_points == "float":
        zp = RNG.uniform(0, 2**bits - 1, (n, blocks)).astype(np.float32)
    else:
        zp = None
    inputs = [("A", F, _f(2, 3, k)), ("B", U8, packed_b), ("scales", F, scales), ("zp", U8 if zero_points == "packed" else F, zp), ("g_idx", I32, None), ("bias", F, _f(n) if bias else None)]
    while inputs[-1][2] is None:
        inputs.pop()
    _check_node("MatMulNBits", inputs, ["Y"], N=n, K=k, bits=bits, block_size=block, atol=1e-4)


# -- models written by onnxruntime's optimizers --------------------------------------------


def _bert_like(causal: bool):
    """A 2-layer BERT-style encoder, or with ``causal`` a GPT-2-style decoder (pre-norm, tanh Gelu)."""
    import torch
    from torch import nn

    hidden, heads = 32, 4

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
            self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)
            self.gelu = nn.GELU(approximate="tanh" if causal else "none")

        def heads(self, x):
            return x.view(x.shape[0], x.shape[1], heads, hidden // heads).transpose(1, 2)

        def attend(self, x, mask):
            q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hidden // heads) + mask
            context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2)
            return self.o(context.reshape(x.shape[0], x.shape[1], hidden))

        def forward(self, x, mask):
            if causal:
                x = x + self.attend(self.norm1(x), mask)
                return x + self.down(self.gelu(self.up(self.norm2(x))))
            x = self.norm1(x + self.attend(x, mask))
            return self.norm2(x + self.down(self.gelu(self.up(x))))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words, self.positions = nn.Embedding(100, hidden), nn.Embedding(64, hidden)
            self.layers = nn.ModuleList(Layer() for _ in range(2))

        def forward(self, ids, attention_mask):
            seq = ids.shape[1]
            x = self.words(ids) + self.positions(torch.arange(seq).unsqueeze(0))
            mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
            if causal:
                mask = mask + torch.triu(torch.full((seq, seq), -10000.0), diagonal=1)
            for layer in self.layers:
                x = layer(x, mask)
            return x

    torch.manual_seed(0)
    return Model().eval()


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def exported(request, tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("ms") / f"{request.param}.onnx"
    ids, mask = torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.int64)
    dims = {0: "batch", 1: "seq"}
    torch.onnx.export(
        _bert_like(request.param == "gpt2"), (ids, mask), str(path), dynamo=False, opset_version=17,
        input_names=["ids", "attention_mask"], output_names=["y"], dynamic_axes={"ids": dims, "attention_mask": dims, "y": dims},
    )  # fmt: skip
    return path


def _feeds() -> dict:
    ids = np.random.default_rng(4).integers(0, 100, (2, 8)).astype(np.int64)
    return {"ids": ids, "attention_mask": np.array([[1] * 8, [1] * 5 + [0] * 3], np.int64)}


def _compare(path: Path) -> set[str]:
    """Run ``path`` on both runtimes; returns its com.microsoft op types."""
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, _feeds())[0]
    options = onnxmux.SessionOptions()
    options.graph_optimization_level = onnxmux.GraphOptimizationLevel.ORT_DISABLE_ALL
    for session in (onnxmux.InferenceSession(str(path), options), onnxmux.InferenceSession(str(path))):
        np.testing.assert_allclose(session.run(None, _feeds())[0], expected, rtol=1e-4, atol=2e-5)
    return {n.op_type for n in onnx.load(str(path)).graph.node if n.domain == MS}


@pytest.mark.parametrize("level", ["ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"])
def test_models_saved_by_onnxruntime(exported: Path, level: str, tmp_path: Path) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    assert _compare(tmp_path / "optimized.onnx") & {"FusedMatMul", "BiasGelu", "FastGelu", "Gelu"}


def test_models_from_the_transformers_optimizer(exported: Path, tmp_path: Path) -> None:
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    model_type = "gpt2" if exported.stem == "gpt2" else "bert"
    optimized = optimizer.optimize_model(str(exported), model_type=model_type, num_heads=4, hidden_size=32, opt_level=0)
    optimized.save_model_to_file(str(tmp_path / "transformers.onnx"))
    found = _compare(tmp_path / "transformers.onnx")
    assert "SkipLayerNormalization" in found


@pytest.mark.parametrize("step, rotary, packed", [("prompt", False, False), ("prompt", True, True), ("token", False, False), ("token", True, False)])
def test_group_query_attention(step, rotary, packed) -> None:
    batch, heads, kv_heads, size, past = 2, 4, 2, 16, 5
    seq = 4 if step == "prompt" else 1
    total = seq if step == "prompt" else past + seq
    q, k, v = _f(batch, seq, heads * size), _f(batch, seq, kv_heads * size), _f(batch, seq, kv_heads * size)
    angles = np.arange(16)[:, None] * (1e-2 ** (np.arange(size // 2) / (size // 2)))[None, :]
    inputs = [
        ("query", F, np.concatenate([q, k, v], axis=-1) if packed else q),
        ("key", F, None if packed else k),
        ("value", F, None if packed else v),
        ("past_key", F, _f(batch, kv_heads, past, size) if step == "token" else None),
        ("past_value", F, _f(batch, kv_heads, past, size) if step == "token" else None),
        ("seqlens_k", I32, np.full(batch, total - 1, np.int32)),
        ("total_sequence_length", I32, np.array(total, np.int32)),
        ("cos", F, np.cos(angles).astype(np.float32) if rotary else None),
        ("sin", F, np.sin(angles).astype(np.float32) if rotary else None),
    ]
    while inputs[-1][2] is None:
        inputs.pop()
    _check_node("GroupQueryAttention", inputs, ["y", "present_key", "present_value"], num_heads=heads, kv_num_heads=kv_heads, do_rotary=int(rotary))


def test_unsupported_variants_fail_clearly() -> None:
    packed = _node_model("MultiHeadAttention", [("query", F, _f(1, 3, 2, 3, 4))], ["y"], num_heads=2)
    session = onnxmux.InferenceSession(packed)
    with pytest.raises(onnxmux.RuntimeFailure, match="MultiHeadAttention.*packed"):
        session.run(None, {"query": _f(1, 3, 2, 3, 4)})
    three_bits = _node_model("MatMulNBits", [("A", F, _f(2, 16)), ("B", U8, np.zeros((4, 1, 6), np.uint8)), ("scales", F, _f(4, 1))], ["Y"], N=4, K=16, bits=3, block_size=16)
    with pytest.raises(onnxmux.InvalidGraph, match="bits must be one of 2, 4, 8"):
        onnxmux.InferenceSession(three_bits)


def test_onnx_reference_imports_after_a_com_microsoft_model_loads() -> None:
    """Loading a model with com.microsoft operators registers their schemas; onnx's reference
    evaluator, imported afterwards in the same process, must still import (it refuses an operator
    name held in two domains when it meets it first)."""
    script = """
import numpy as np, onnx
from onnx import TensorProto, helper
import onnxmux
node = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain="com.microsoft")
graph = helper.make_graph([node], "g", [
    helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8]),
    helper.make_tensor_value_info("pos", TensorProto.INT64, [1, 2]),
    helper.make_tensor_value_info("cos", TensorProto.FLOAT, [4, 4]),
    helper.make_tensor_value_info("sin", TensorProto.FLOAT, [4, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
onnxmux.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
import onnx.reference
print(type(onnx.reference.ReferenceEvaluator).__name__)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
