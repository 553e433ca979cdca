"""Embedding lookup shared by the discriminators: token ids, or differentiable one-hots."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def embed_ids_or_onehots(weight: torch.Tensor, x: torch.Tensor, owner: str) -> torch.Tensor:
    """``weight[x]`` for ids [B, T], or ``x @ weight[:V]`` for float one-hots / soft inputs [B, T, V].

    Generators predict no MASK id, so one-hots over the first V <= vocab_size ids are accepted.
    """
    if x.is_floating_point():
        V = x.shape[-1]
        if V > weight.shape[0]:
            raise ValueError(f"{owner}: soft input last dim must be <= {weight.shape[0]}, got {tuple(x.shape)}")
        return x.to(weight.dtype) @ weight[:V]
    return F.embedding(x.long(), weight)
