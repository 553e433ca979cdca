"""Pure-PyTorch references for every op, with the same signatures as the public ops.

They are the ground truth in tests and the path taken on the CPU under ``TGAN_BACKEND=auto``.
Written for clarity, not speed: they materialise the full [.., T, M+T] or [.., V] tensors the
kernels avoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rel_attention(q, k, v, r, u, vb, scale=None, dropout_p=0.0):
    """Transformer-XL relative attention, causal over [memory; segment] (reference).

    Shapes: q [B, T, H, D]; k, v [B, M+T, H, D]; r [R, H, D] with R >= M+T, row d the projected
    relative embedding of distance d; u, vb [H, D]. Returns [B, T, H, D].

    score(i, j) = ((q_i + u)·k_j + (q_i + vb)·r_{M+i-j}) * scale for j <= M+i, masked otherwise.
    The relative term is gathered explicitly by distance (no rel_shift trick).
    """
    B, T, H, D = q.shape
    L = k.shape[1]
    M = L - T
    scale = D ** -0.5 if scale is None else scale
    ac = torch.einsum("bihd,bjhd->bhij", q + u, k)  # [B, H, T, L]
    bd_by_dist = torch.einsum("bihd,jhd->bhij", q + vb, r[:L])  # [B, H, T, L], column = distance
    pos_q = torch.arange(T, device=q.device) + M
    dist = pos_q[:, None] - torch.arange(L, device=q.device)[None, :]  # [T, L]
    visible = dist >= 0
    bd = bd_by_dist.gather(-1, dist.clamp(min=0).expand(B, H, T, L))
    scores = (ac + bd).float() * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.einsum("bhij,bjhd->bihd", probs, v)
