"""Real torch-exported ONNX models for onnxmux's correctness tests and benchmarks.

Each model is exported once and cached under ``.cache/models/`` at the repository root
(git-ignored), or under the folder named by the ``ONNXMUX_MODEL_CACHE`` environment variable.
Two exporters are supported:

* ``"dynamo"``: torch's default ``torch.export``-based exporter (opset 18). Weights go to a
  ``<name>.onnx.data`` file beside the model, so loading exercises external data.
* ``"legacy"``: the TorchScript-based exporter (``dynamo=False``, opset 17), weights embedded.

The models are written here with plain torch modules (no torchvision, no transformers) and
their weights come from ``torch.manual_seed(0)``, so every export of a model is identical.

Run ``python benchmarks/models.py`` to generate every model and print its path and node count.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

EXPORTERS = ("dynamo", "legacy")
#: The legacy exporter without constant folding: BatchNormalization stays a node of its own.
UNFOLDED = "legacy-unfolded"
DYNAMO_OPSET = 18
LEGACY_OPSET = 17

REPO_ROOT = Path(__file__).resolve().parent.parent

# BERT-style encoder sizes (a scaled-down BERT-base: 4 layers, hidden 256, 4 heads).
BERT_VOCAB = 30522
BERT_MAX_POSITIONS = 512
BERT_TYPE_VOCAB = 2
BERT_HIDDEN = 256
BERT_HEADS = 4
BERT_INTERMEDIATE = 1024
BERT_LAYERS = 4


def cache_dir() -> Path:
    """The folder models are cached in: ``$ONNXMUX_MODEL_CACHE`` or ``<repo>/.cache/models``."""
    override = os.environ.get("ONNXMUX_MODEL_CACHE")
    return Path(override) if override else REPO_ROOT / ".cache" / "models"


# -- ResNet-18 ----------------------------------------------------------------------------


def _build_resnet18() -> "torch.nn.Module":
    """A ResNet-18 (ImageNet layout, 1000 classes) with seeded weights and random BN statistics."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        """Two 3x3 conv+BN layers with an identity or 1x1 conv+BN shortcut."""

        def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_ch)
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or in_ch != out_ch:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), 4 stages of 2 blocks, pool, fc."""

        def __init__(self, num_classes: int = 1000) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages = []
            in_ch = 64
            for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
                in_ch = out_ch
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(0)
    model = ResNet18()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def resnet18(exporter: str = "dynamo") -> Path:
    """The cached ResNet-18 model (input ``input`` float32 ``[batch, 3, 224, 224]``, output ``logits``)."""

    def export(path: Path) -> None:
        import torch

        example = (torch.randn(2, 3, 224, 224),)
        _export(
            _build_resnet18(),
            example,
            path,
            exporter,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )

    return _cached(f"resnet18-{exporter}", exporter, export)


# -- BERT ---------------------------------------------------------------------------------


def _build_bert() -> "torch.nn.Module":
    """A 4-layer BERT encoder (post-LayerNorm, GELU FFN) with seeded weights."""
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        """Multi-head scaled dot-product self-attention with an additive mask."""

        def __init__(self) -> None:
            super().__init__()
            self.head_dim = BERT_HIDDEN // BERT_HEADS
            self.query = nn.Linear(BERT_HIDDEN, BERT_HIDDEN)
            self.key = nn.Linear(BERT_HIDDEN, BERT_HIDDEN)
            self.value = nn.Linear(BERT_HIDDEN, BERT_HIDDEN)
            self.out = nn.Linear(BERT_HIDDEN, BERT_HIDDEN)

        def _heads(self, x: torch.Tensor) -> torch.Tensor:
            """[batch, seq, hidden] -> [batch, heads, seq, head_dim]."""
            return x.view(x.shape[0], x.shape[1], BERT_HEADS, self.head_dim).transpose(1, 2)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
            context = torch.matmul(torch.softmax(scores, dim=-1), v)
            context = context.transpose(1, 2).reshape(x.shape[0], x.shape[1], BERT_HIDDEN)
            return self.out(context)

    class EncoderLayer(nn.Module):
        """Attention and feed-forward sublayers, each followed by residual add and LayerNorm."""

        def __init__(self) -> None:
            super().__init__()
            self.attention = SelfAttention()
            self.attention_norm = nn.LayerNorm(BERT_HIDDEN, eps=1e-12)
            self.intermediate = nn.Linear(BERT_HIDDEN, BERT_INTERMEDIATE)
            self.gelu = nn.GELU()
            self.output = nn.Linear(BERT_INTERMEDIATE, BERT_HIDDEN)
            self.output_norm = nn.LayerNorm(BERT_HIDDEN, eps=1e-12)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.attention_norm(x + self.attention(x, mask))
            return self.output_norm(x + self.output(self.gelu(self.intermediate(x))))

    class BertEncoder(nn.Module):
        """Word + position + token-type embeddings, LayerNorm, then the encoder layers."""

        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(BERT_VOCAB, BERT_HIDDEN)
            self.position_embeddings = nn.Embedding(BERT_MAX_POSITIONS, BERT_HIDDEN)
            self.token_type_embeddings = nn.Embedding(BERT_TYPE_VOCAB, BERT_HIDDEN)
            self.embedding_norm = nn.LayerNorm(BERT_HIDDEN, eps=1e-12)
            self.layers = nn.ModuleList(EncoderLayer() for _ in range(BERT_LAYERS))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], dtype=torch.int64, device=input_ids.device).unsqueeze(0)
            token_types = torch.zeros_like(input_ids)
            x = (
                self.word_embeddings(input_ids)
                + self.position_embeddings(positions)
                + self.token_type_embeddings(token_types)
            )
            x = self.embedding_norm(x)
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.layers:
                x = layer(x, mask)
            return x

    torch.manual_seed(0)
    model = BertEncoder()
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)  # BERT's initializer range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.bias, 0.0, 0.02)
        elif isinstance(m, nn.LayerNorm):
            with torch.no_grad():
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)
    return model.eval()


def bert(exporter: str = "dynamo") -> Path:
    """The cached BERT encoder (int64 ``input_ids``/``attention_mask`` ``[batch, seq]`` -> ``last_hidden_state``)."""

    def export(path: Path) -> None:
        import torch

        ids = torch.randint(0, BERT_VOCAB, (2, 16), dtype=torch.int64)
        mask = torch.ones(2, 16, dtype=torch.int64)
        dims = {0: "batch", 1: "seq"}
        _export(
            _build_bert(),
            (ids, mask),
            path,
            exporter,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dims, "attention_mask": dims, "last_hidden_state": dims},
        )

    return _cached(f"bert-{exporter}", exporter, export)


MODELS: dict[str, Callable[[str], Path]] = {"resnet18": resnet18, "bert": bert}


# -- export and cache ---------------------------------------------------------------------


def _export(
    model: "torch.nn.Module",
    args: tuple,
    path: Path,
    exporter: str,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Export ``model`` to ``path`` with the named exporter; dynamo puts the weights in ``<path>.data``."""
    import torch

    # The dynamo exporter logs a warning per torchvision op it cannot register; not relevant here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                opset_version=DYNAMO_OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                verbose=False,
            )
            program.save(str(path), external_data=True)
        else:
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                do_constant_folding=exporter != UNFOLDED,
                opset_version=LEGACY_OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
            )


def _cached(name: str, exporter: str, export: Callable[[Path], None]) -> Path:
    """``<cache>/<name>.onnx``, exported first when absent.

    The export goes to a temporary folder inside the cache; its files are then renamed into
    place, the ``.onnx`` last, so an interrupted export never leaves a model that looks complete.
    The external-data file keeps the name the model refers to (``<name>.onnx.data``).
    """
    if exporter not in (*EXPORTERS, UNFOLDED):
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {', '.join((*EXPORTERS, UNFOLDED))}")
    folder = cache_dir()
    target = folder / f"{name}.onnx"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    try:
        export(staging / target.name)
        for produced in sorted(staging.iterdir(), key=lambda p: p.suffix == ".onnx"):
            os.replace(produced, folder / produced.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main() -> None:
    """Generate every model with every exporter; print paths, node counts and op types."""
    import onnx

    for model_name, make in MODELS.items():
        for exporter in EXPORTERS:
            path = make(exporter)
            graph = onnx.load(str(path), load_external_data=False).graph
            ops = collections.Counter(node.op_type for node in graph.node)
            summary = ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
            print(f"{model_name:9s} {exporter:7s} {len(graph.node):4d} nodes  {path}\n    {summary}")


if __name__ == "__main__":
    main()
