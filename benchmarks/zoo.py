"""The benchmark suite's neural networks beyond ResNet-18 and BERT, written in plain torch.

Each is a scaled-down copy of a model people run (MobileNetV3-small, EfficientNet-B0, a small
ViT, DistilBERT, GPT-2, a T5 encoder, a Whisper audio encoder, an LSTM tagger) with the same
operators and layer layout, random weights from ``torch.manual_seed(0)``, no torchvision or
transformers, nothing downloaded. They are exported and cached by ``benchmarks/models.py``'s
``_export``/``_cached``; ``SUITE`` lists every model the suite runs, with its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from benchmarks import models

if TYPE_CHECKING:
    import torch

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class NetSpec:
    """How to build, export and feed one suite model.

    ``build`` makes the torch module; ``example`` its export inputs (torch tensors);
    ``inputs``/``outputs`` the ONNX names; ``dynamic`` the dynamic axes per name;
    ``feeds`` the seeded NumPy inputs the benchmark times.
    """

    build: Callable[[], "torch.nn.Module"]
    example: Callable[[], tuple]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]
    feeds: Callable[[np.random.Generator], Feeds]

    def path(self, name: str, exporter: str) -> Path:
        """The cached model of this spec by ``exporter``, exported first when absent."""

        def export(path: Path) -> None:
            models._export(
                self.build(),
                self.example(),
                path,
                exporter,
                input_names=list(self.inputs),
                output_names=list(self.outputs),
                dynamic_axes=self.dynamic,
            )

        return models._cached(f"{name}-{exporter}", exporter, export)


# -- building blocks -----------------------------------------------------------------------


def _seeded(model: "torch.nn.Module") -> "torch.nn.Module":
    """``model`` in eval mode with random BatchNorm statistics (weights already seeded)."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int, act: "torch.nn.Module | None"):
    """Conv (no bias) + BatchNorm + optional activation, padded to keep the size at stride 1."""
    from torch import nn

    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act] if act is not None else []))


def _squeeze_excite(channels: int, squeezed: int, inner: "torch.nn.Module", gate: "torch.nn.Module"):
    """Squeeze-and-excitation: global pool, two 1x1 convs, a gate scaling the input."""
    from torch import nn

    class SqueezeExcite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduce = nn.Conv2d(channels, squeezed, 1)
            self.expand = nn.Conv2d(squeezed, channels, 1)
            self.inner, self.gate = inner, gate

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * self.gate(self.expand(self.inner(self.reduce(s))))

    return SqueezeExcite()


def _inverted_residual(cin, expanded, cout, k, stride, se_channels, act_factory, gate_factory):
    """MobileNet/EfficientNet block: expand 1x1, depthwise kxk, optional SE, project 1x1."""
    from torch import nn

    class InvertedResidual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = []
            if expanded != cin:
                layers.append(_conv_bn(cin, expanded, 1, 1, 1, act_factory()))
            layers.append(_conv_bn(expanded, expanded, k, stride, expanded, act_factory()))
            if se_channels:
                layers.append(_squeeze_excite(expanded, se_channels, act_factory(), gate_factory()))
            layers.append(_conv_bn(expanded, cout, 1, 1, 1, None))
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    return InvertedResidual()


def _image_feeds(rng: np.random.Generator) -> Feeds:
    return {"input": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}


def _image_example() -> tuple:
    import torch

    return (torch.randn(2, 3, 224, 224),)


_IMAGE = dict(
    example=_image_example,
    inputs=("input",),
    outputs=("logits",),
    dynamic={"input": {0: "batch"}, "logits": {0: "batch"}},
    feeds=_image_feeds,
)


def _build_mobilenet_v3_small() -> "torch.nn.Module":
    """MobileNetV3-small (ImageNet layout): depthwise convs, SE with HardSigmoid, HardSwish."""
    import torch
    from torch import nn

    # kernel, expanded, out, squeeze-excite, hard-swish, stride
    config = [
        (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
    ]  # fmt: skip
    torch.manual_seed(0)
    layers = [_conv_bn(3, 16, 3, 2, 1, nn.Hardswish())]
    cin = 16
    for k, expanded, cout, se, hs, stride in config:
        act = nn.Hardswish if hs else nn.ReLU
        squeezed = (expanded // 4 + 7) // 8 * 8 if se else 0
        layers.append(_inverted_residual(cin, expanded, cout, k, stride, squeezed, act, nn.Hardsigmoid))
        cin = cout
    layers.append(_conv_bn(cin, 576, 1, 1, 1, nn.Hardswish()))
    head = nn.Sequential(nn.Flatten(), nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))
    return _seeded(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), head))


def _build_efficientnet_b0() -> "torch.nn.Module":
    """EfficientNet-B0 (ImageNet layout): MBConv blocks with depthwise convs, SE, SiLU."""
    import torch
    from torch import nn

    # expansion, kernel, stride, out, repeats
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip
    torch.manual_seed(0)
    layers = [_conv_bn(3, 32, 3, 2, 1, nn.SiLU())]
    cin = 32
    for expansion, k, stride, cout, repeats in stages:
        for i in range(repeats):
            layers.append(
                _inverted_residual(
                    cin, cin * expansion, cout, k, stride if i == 0 else 1, max(1, cin // 4), nn.SiLU, nn.Sigmoid
                )
            )
            cin = cout
    layers.append(_conv_bn(cin, 1280, 1, 1, 1, nn.SiLU()))
    head = nn.Sequential(nn.Flatten(), nn.Linear(1280, 1000))
    return _seeded(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), head))


# -- transformers --------------------------------------------------------------------------


def _transformer_layer(dim: int, heads: int, ffn: int, *, act: str, pre_norm: bool, rms: bool = False,
                       bias: bool = True, position_bias: bool = False):  # fmt: skip
    """One encoder/decoder layer: self-attention with an additive mask, then a feed-forward net.

    ``act`` is "erf" (GELU), "tanh" (tanh-GELU) or "relu"; ``rms`` uses T5's RMS norm without
    bias; ``position_bias`` adds a bias given to ``forward`` to the attention scores.
    """
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    def norm():
        return RMSNorm() if rms else nn.LayerNorm(dim, eps=1e-5)

    activation = {"erf": nn.GELU(), "tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}[act]

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
            self.out = nn.Linear(dim, dim, bias=bias)
            self.norm1, self.norm2 = norm(), norm()
            self.ffn = nn.Sequential(nn.Linear(dim, ffn, bias=bias), activation, nn.Linear(ffn, dim, bias=bias))

        def attention(self, x, mask):
            b, s, _ = x.shape
            q, k, v = self.qkv(x).view(b, s, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(dim // heads)) + mask
            context = torch.softmax(scores, dim=-1) @ v
            return self.out(context.transpose(1, 2).reshape(b, s, dim))

        def forward(self, x, mask):
            if pre_norm:
                x = x + self.attention(self.norm1(x), mask)
                return x + self.ffn(self.norm2(x))
            x = self.norm1(x + self.attention(x, mask))
            return self.norm2(x + self.ffn(x))

    return Layer()


def _init_transformer(model: "torch.nn.Module") -> "torch.nn.Module":
    """Weights as transformers initialise them (normal, std 0.02), LayerNorm scales near 1."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.02)
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)
    return model.eval()


TEXT_SEQ = 128
VOCAB = 8192


def _text_feeds(rng: np.random.Generator) -> Feeds:
    return {
        "input_ids": rng.integers(0, VOCAB, (1, TEXT_SEQ), dtype=np.int64),
        "attention_mask": np.ones((1, TEXT_SEQ), dtype=np.int64),
    }


def _text_example() -> tuple:
    import torch

    return (torch.randint(0, VOCAB, (2, 16)), torch.ones(2, 16, dtype=torch.int64))


_TEXT_DIMS = {0: "batch", 1: "seq"}
_TEXT = dict(
    example=_text_example,
    inputs=("input_ids", "attention_mask"),
    outputs=("hidden",),
    dynamic={"input_ids": _TEXT_DIMS, "attention_mask": _TEXT_DIMS, "hidden": _TEXT_DIMS},
    feeds=_text_feeds,
)


def _build_distilbert() -> "torch.nn.Module":
    """DistilBERT-style encoder: 6 post-norm layers, no token types, mask by masked_fill."""
    import torch
    from torch import nn

    dim = 256

    class DistilBert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words, self.positions = nn.Embedding(VOCAB, dim), nn.Embedding(512, dim)
            self.norm = nn.LayerNorm(dim)
            self.layers = nn.ModuleList(_transformer_layer(dim, 4, 4 * dim, act="erf", pre_norm=False) for _ in range(6))

        def forward(self, input_ids, attention_mask):
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            x = self.norm(self.words(input_ids) + self.positions(positions))
            mask = torch.zeros(attention_mask.shape, dtype=x.dtype).masked_fill(attention_mask == 0, -1e9)
            mask = mask[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask)
            return x

    torch.manual_seed(0)
    return _init_transformer(DistilBert())


def _build_gpt2() -> "torch.nn.Module":
    """GPT-2-style decoder: 4 pre-norm layers, causal mask, tanh-GELU, tied LM head."""
    import torch
    from torch import nn

    dim = 256

    class Gpt2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words, self.positions = nn.Embedding(VOCAB, dim), nn.Embedding(1024, dim)
            self.layers = nn.ModuleList(_transformer_layer(dim, 4, 4 * dim, act="tanh", pre_norm=True) for _ in range(4))
            self.norm = nn.LayerNorm(dim)

        def forward(self, input_ids, attention_mask):
            s = input_ids.shape[1]
            positions = torch.arange(s).unsqueeze(0)
            x = self.words(input_ids) + self.positions(positions)
            causal = torch.ones(s, s, dtype=torch.bool).tril()
            keep = causal[None, None] & (attention_mask[:, None, None, :] > 0)
            mask = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, -1e9)
            for layer in self.layers:
                x = layer(x, mask)
            return self.norm(x) @ self.words.weight.T

    torch.manual_seed(0)
    return _init_transformer(Gpt2())


def _build_t5_encoder() -> "torch.nn.Module":
    """T5-style encoder: 4 pre-norm layers, RMS norm, no biases, ReLU FFN, bucketed relative position bias."""
    import torch
    from torch import nn

    dim, heads, buckets = 256, 4, 32

    class T5Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding(VOCAB, dim)
            self.relative = nn.Embedding(buckets, heads)
            self.layers = nn.ModuleList(
                _transformer_layer(dim, heads, 4 * dim, act="relu", pre_norm=True, rms=True, bias=False)
                for _ in range(4)
            )

        def bucket(self, distance):
            """T5's bidirectional log-spaced buckets of a relative distance."""
            half = buckets // 2
            side = (distance > 0).to(torch.int64) * half
            n = distance.abs()
            exact = half // 2
            log = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(128 / exact) * (half - exact))
            log = torch.minimum(log.to(torch.int64), torch.full_like(n, half - 1))
            return side + torch.where(n < exact, n, log)

        def forward(self, input_ids, attention_mask):
            s = input_ids.shape[1]
            positions = torch.arange(s)
            bias = self.relative(self.bucket(positions[None, :] - positions[:, None])).permute(2, 0, 1)[None]
            mask = bias + (1.0 - attention_mask[:, None, None, :].float()) * -1e9
            x = self.words(input_ids)
            for layer in self.layers:
                x = layer(x, mask)
            return x

    torch.manual_seed(0)
    return _init_transformer(T5Encoder())


VIT_PATCH = 16


def _build_vit() -> "torch.nn.Module":
    """A small ViT (ViT-Tiny sizes, 6 layers): patch conv, class token, pre-norm erf-GELU layers."""
    import torch
    from torch import nn

    dim = 192

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, dim, VIT_PATCH, VIT_PATCH)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.positions = nn.Parameter(torch.randn(1, (224 // VIT_PATCH) ** 2 + 1, dim) * 0.02)
            self.layers = nn.ModuleList(_transformer_layer(dim, 3, 4 * dim, act="erf", pre_norm=True) for _ in range(6))
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, 1000)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.positions
            zero = torch.zeros(1, dtype=x.dtype)
            for layer in self.layers:
                x = layer(x, zero)
            return self.head(self.norm(x[:, 0]))

    torch.manual_seed(0)
    return _init_transformer(ViT())


WHISPER_MELS, WHISPER_FRAMES = 80, 1000


def _build_whisper_encoder() -> "torch.nn.Module":
    """Whisper-style audio encoder (tiny sizes, 1000 frames): two GELU conv1d, sinusoids, 4 pre-norm layers."""
    import torch
    from torch import nn

    dim = 384

    class WhisperEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(WHISPER_MELS, dim, 3, padding=1)
            self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
            steps = torch.arange(WHISPER_FRAMES // 2)[:, None] / torch.exp(torch.arange(dim // 2) * (math.log(10000) / (dim // 2 - 1)))[None]
            self.register_buffer("positions", torch.cat([steps.sin(), steps.cos()], dim=1))
            self.layers = nn.ModuleList(_transformer_layer(dim, 6, 4 * dim, act="erf", pre_norm=True) for _ in range(4))
            self.norm = nn.LayerNorm(dim)

        def forward(self, mel):
            x = nn.functional.gelu(self.conv2(nn.functional.gelu(self.conv1(mel))))
            x = x.transpose(1, 2) + self.positions
            zero = torch.zeros(1, dtype=x.dtype)
            for layer in self.layers:
                x = layer(x, zero)
            return self.norm(x)

    torch.manual_seed(0)
    return _init_transformer(WhisperEncoder())


def _mel_example() -> tuple:
    import torch

    return (torch.randn(2, WHISPER_MELS, WHISPER_FRAMES),)


TAGGER_SEQ, TAGGER_VOCAB = 64, 10000


def _build_lstm_tagger() -> "torch.nn.Module":
    """A sequence tagger: embedding, 2-layer bidirectional LSTM (hidden 256), linear to 20 tags."""
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding(TAGGER_VOCAB, 128)
            self.lstm = nn.LSTM(128, 256, num_layers=2, bidirectional=True, batch_first=True)
            self.tags = nn.Linear(512, 20)

        def forward(self, input_ids):
            return self.tags(self.lstm(self.words(input_ids))[0])

    torch.manual_seed(0)
    return Tagger().eval()


def _tagger_example() -> tuple:
    import torch

    return (torch.randint(0, TAGGER_VOCAB, (2, TAGGER_SEQ)),)


def _resnet_like(name: str) -> Callable[[np.random.Generator], Feeds]:
    """The feeds ``benchmarks/common.make_feeds`` gives the original two models (batch 1, seq 128)."""

    def feeds(rng: np.random.Generator) -> Feeds:
        from benchmarks.common import make_feeds

        return make_feeds(name, 1, TEXT_SEQ, seed=int(rng.integers(1 << 16)))

    return feeds


@dataclass(frozen=True)
class Model:
    """A suite model: its cached path per exporter and its feeds."""

    path: Callable[[str], Path]
    feeds: Callable[[np.random.Generator], Feeds]


def _net(name: str, build: Callable, **kwargs: Any) -> Model:
    spec = NetSpec(build=build, **{**_TEXT, **kwargs})
    return Model(path=lambda exporter: spec.path(name, exporter), feeds=spec.feeds)


#: Every neural network of the suite, in the order the suite runs them.
SUITE: dict[str, Model] = {
    "mobilenet_v3_small": _net("mobilenet_v3_small", _build_mobilenet_v3_small, **_IMAGE),
    "efficientnet_b0": _net("efficientnet_b0", _build_efficientnet_b0, **_IMAGE),
    "resnet18": Model(models.resnet18, _resnet_like("resnet18")),
    "vit": _net("vit", _build_vit, **_IMAGE),
    "bert": Model(models.bert, _resnet_like("bert")),
    "distilbert": _net("distilbert", _build_distilbert),
    "gpt2": _net("gpt2", _build_gpt2, outputs=("logits",), dynamic={"input_ids": _TEXT_DIMS, "attention_mask": _TEXT_DIMS, "logits": _TEXT_DIMS}),
    "t5_encoder": _net("t5_encoder", _build_t5_encoder),
    "whisper_encoder": _net(
        "whisper_encoder",
        _build_whisper_encoder,
        example=_mel_example,
        inputs=("mel",),
        outputs=("hidden",),
        dynamic={"mel": {0: "batch"}, "hidden": {0: "batch"}},
        feeds=lambda rng: {"mel": rng.standard_normal((1, WHISPER_MELS, WHISPER_FRAMES), dtype=np.float32)},
    ),
    "lstm_tagger": _net(
        "lstm_tagger",
        _build_lstm_tagger,
        example=_tagger_example,
        inputs=("input_ids",),
        outputs=("tags",),
        dynamic={"input_ids": _TEXT_DIMS, "tags": _TEXT_DIMS},
        feeds=lambda rng: {"input_ids": rng.integers(0, TAGGER_VOCAB, (1, TAGGER_SEQ), dtype=np.int64)},
    ),
}
