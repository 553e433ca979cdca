"""RelGAN-style CNN discriminator, the baseline: embedding, convolutions of several widths,
max-pool over time, a highway layer, dropout, one logit."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tgan.model.embedding import embed_ids_or_onehots
from tgan.model.config import CNNConfig


class CNNDiscriminator(nn.Module):
    """``forward(x) -> [B]`` logits for ids [B, T] or float one-hots [B, T, V]."""

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.d_embed, cfg.n_filters, w) for w in cfg.widths)
        n = cfg.n_filters * len(cfg.widths)
        self.highway = nn.Linear(n, 2 * n)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(n, 1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv1d)):
                nn.init.normal_(m.weight, 0.0, cfg.init_std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def embed_words(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, d_embed] from ids or one-hots."""
        return embed_ids_or_onehots(self.word.weight, x, "CNNDiscriminator")

    def score_embedded(self, e: torch.Tensor) -> torch.Tensor:
        """One logit per sequence [B] from embeddings [B, T, d_embed]."""
        if e.shape[1] < max(self.cfg.widths):
            raise ValueError(f"CNNDiscriminator: sequences must be >= {max(self.cfg.widths)} tokens, got {e.shape[1]}")
        x = e.transpose(1, 2)  # [B, d, T]
        h = torch.cat([F.relu(c(x)).amax(dim=-1) for c in self.convs], dim=-1)
        t, g = self.highway(h).chunk(2, dim=-1)
        g = torch.sigmoid(g)
        h = g * F.relu(t) + (1 - g) * h
        return self.head(self.drop(h)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_embedded(self.embed_words(x))
