"""A small pre-LN GPT for in-context regression, in the Garg et al. (2022) format.

Tokens alternate x_1, y_1, x_2, y_2, ...: x is read in as [x], y as [y, 0, ..., 0] (Garg) or, with
`y_channel=True`, in its own extra input dimension ([x, 0] and [0, ..., 0, y]), because with the
Garg format y shares the read-in column of x's first coordinate (basis B1). With `paired=True`
the y token also carries its x ([x_i, y_i], as in von Oswald et al. 2023; implies the y channel),
so one attention layer can already regress y on x: no head has to first copy x_i onto y_i's
token, the step behind most of the Garg format's long loss plateau. A linear read-out at
the x_i position predicts y_i. The module names (`blocks`, `attn`, `attn.out_proj`, `mlp`,
`final_norm`) are those of the `conceptlens_gpt` row of `conceptlens.hooks.components`, so
`layout_for(model)` and `Trace` work on it unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    n_dims: int = 16
    n_points: int = 20
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 64
    mlp_ratio: int = 4
    y_channel: bool = False
    paired: bool = False
    model_type: str = "conceptlens_gpt"

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Causal multi-head self-attention; `out_proj`'s input is the concatenation of the heads."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, seq, width = hidden.shape
        q, k, v = self.qkv(hidden).view(batch, seq, 3, self.n_heads, width // self.n_heads).unbind(2)
        heads = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True)
        return self.out_proj(heads.transpose(1, 2).reshape(batch, seq, width))


class MLP(nn.Module):
    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.fc = nn.Linear(d_model, ratio * d_model)
        self.proj = nn.Linear(ratio * d_model, d_model)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(hidden)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = Attention(config.d_model, config.n_heads)
        self.ln_mlp = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config.d_model, config.mlp_ratio)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.attn(self.ln_attn(hidden))
        return hidden + self.mlp(self.ln_mlp(hidden))


class RegressionGPT(nn.Module):
    """`model(xs [B, K, D], ys [B, K]) -> predictions [B, K]` (prediction i sees x_1..x_i, y_1..y_{i-1})."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
        self.config = config
        self.read_in = nn.Linear(config.n_dims + int(config.y_channel or config.paired), config.d_model)
        self.position = nn.Embedding(2 * config.n_points, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.read_out = nn.Linear(config.d_model, 1)
        self.apply(self._init)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("out_proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(param, std=0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def tokens(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Interleave `[B, K, D]` and `[B, K]` into `[B, 2K, D(+1)]` input vectors."""
        return interleave(xs, ys, self.config)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(xs, ys)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        hidden = self.read_in(tokens) + self.position(positions)
        for block in self.blocks:
            hidden = block(hidden)
        return self.read_out(self.final_norm(hidden))[:, ::2, 0]


def interleave(xs: torch.Tensor, ys: torch.Tensor, config: GPTConfig) -> torch.Tensor:
    """The token vectors `[B, 2K, D(+1)]` of `xs [B, K, D]` and `ys [B, K]` in `config`'s format."""
    batch, points, dims = xs.shape
    own_channel = config.y_channel or config.paired
    width = dims + int(own_channel)
    x_tokens = xs.new_zeros(batch, points, width)
    x_tokens[..., :dims] = xs
    y_tokens = xs.new_zeros(batch, points, width)
    if config.paired:
        y_tokens[..., :dims] = xs
    y_tokens[..., -1 if own_channel else 0] = ys
    return torch.stack((x_tokens, y_tokens), dim=2).reshape(batch, 2 * points, width)


def x_position(example: int) -> int:
    """Token index of x_example (1-based example number): the position that predicts y_example."""
    return 2 * (example - 1)


def y_position(example: int) -> int:
    """Token index of y_example (1-based example number)."""
    return 2 * example - 1
