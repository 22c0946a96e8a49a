"""A GPT-2-style decoder (pre-LayerNorm, causal self-attention, tanh-GELU MLP, tied LM head),
exported and cached like the models of ``benchmarks/models.py``, for the CUDA provider's GPU check.

Input ``input_ids`` int64 ``[batch, seq]``; output ``logits`` float32 ``[batch, vocab]``, the
next-token logits of the last position. 4 layers, hidden 256, 4 heads, GPT-2's vocabulary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks import models

if TYPE_CHECKING:
    import torch

VOCAB = 50257
POSITIONS = 1024
HIDDEN = 256
HEADS = 4
LAYERS = 4


def build_gpt2() -> "torch.nn.Module":
    """The decoder with seeded weights (GPT-2's initializer range)."""
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        """Fused QKV projection, causal mask, softmax attention, output projection."""

        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
            self.proj = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, seq, _ = x.shape
            q, k, v = self.qkv(x).split(HIDDEN, dim=2)
            q, k, v = (t.view(batch, seq, HEADS, HIDDEN // HEADS).transpose(1, 2) for t in (q, k, v))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HIDDEN // HEADS)
            causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(causal, float("-inf"))
            context = torch.matmul(torch.softmax(scores, dim=-1), v)
            return self.proj(context.transpose(1, 2).reshape(batch, seq, HIDDEN))

    class Block(nn.Module):
        """Pre-LayerNorm attention and MLP sublayers with residuals."""

        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(HIDDEN)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(HIDDEN)
            self.fc = nn.Linear(HIDDEN, 4 * HIDDEN)
            self.gelu = nn.GELU(approximate="tanh")
            self.out = nn.Linear(4 * HIDDEN, HIDDEN)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x))
            return x + self.out(self.gelu(self.fc(self.ln_2(x))))

    class Decoder(nn.Module):
        """Token and position embeddings, the blocks, final LayerNorm, tied LM head on the last position."""

        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(VOCAB, HIDDEN)
            self.wpe = nn.Embedding(POSITIONS, HIDDEN)
            self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
            self.ln_f = nn.LayerNorm(HIDDEN)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], dtype=torch.int64, device=input_ids.device).unsqueeze(0)
            x = self.wte(input_ids) + self.wpe(positions)
            for block in self.blocks:
                x = block(x)
            return torch.matmul(self.ln_f(x[:, -1, :]), self.wte.weight.t())

    torch.manual_seed(0)
    model = Decoder()
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model.eval()


def gpt2(exporter: str = "dynamo") -> Path:
    """The cached decoder model (``input_ids`` ``[batch, seq]`` -> ``logits`` ``[batch, vocab]``)."""

    def export(path: Path) -> None:
        import torch

        ids = torch.randint(0, VOCAB, (2, 16), dtype=torch.int64)
        models._export(
            build_gpt2(),
            (ids,),
            path,
            exporter,
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
        )

    return models._cached(f"gpt2-{exporter}", exporter, export)


def make_feeds(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded token ids."""
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, VOCAB, (batch, seq), dtype=np.int64)}
