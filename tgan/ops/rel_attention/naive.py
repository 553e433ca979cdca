"""Relative attention in plain PyTorch: the reference, with the public op's signature.

The ground truth in tests and the path taken on the CPU under ``TGAN_BACKEND=auto``. Written for
clarity, not speed: it materialises the full [B, H, T, M+T] scores the kernels avoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tgan.ops.philox import MASK32, philox4x32


def _softmax_pv(scores, visible, scale, dropout_p, v):
    """Scaled scores [B, H, T, L] masked where not ``visible`` [T, L], softmax in fp32, dropout,
    times v [B, L, H, D] -> [B, T, H, D]."""
    scores = (scores.float() * scale).masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.einsum("bhij,bjhd->bihd", probs, v)


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
    return _softmax_pv(ac + bd, visible, scale, dropout_p, v)


def rel_attention_relshift(q, k, v, r, u, vb, scale=None, dropout_p=0.0):
    """Transformer-XL relative attention with the ``rel_shift`` trick of its released code (eager).

    Same shapes, scores and result as ``rel_attention`` above, computed as Transformer-XL does:
    the relative scores are first taken against r in decreasing-distance order (column c holds
    distance L-1-c, L = M+T), then shifted so that row i, column j holds distance M+i-j: pad one
    zero column on the left, read the [T, L+1] block as [L+1, T], drop its first row and read the
    rest back as [T, L]. Entries with j > M+i come out as other rows' values; they are masked, so
    the result is exact for causal attention only.
    """
    B, T, H, D = q.shape
    L = k.shape[1]
    M = L - T
    scale = D ** -0.5 if scale is None else scale
    ac = torch.einsum("bihd,bjhd->bhij", q + u, k)  # [B, H, T, L]
    bd = torch.einsum("bihd,chd->bhic", q + vb, r[:L].flip(0))  # [B, H, T, L], c = L-1-distance
    padded = torch.cat([bd.new_zeros(B, H, T, 1), bd], dim=-1)  # [B, H, T, L+1]
    bd = padded.reshape(B, H, L + 1, T)[:, :, 1:].reshape(B, H, T, L)
    pos_q = torch.arange(T, device=q.device) + M
    visible = torch.arange(L, device=q.device)[None, :] <= pos_q[:, None]  # [T, L]
    return _softmax_pv(ac + bd, visible, scale, dropout_p, v)


def dropout_threshold(dropout_p: float) -> int:
    """floor(p * 2^32): the Triton attention kernels drop a key when its 32 random bits are below it."""
    return min(int(dropout_p * 2**32), 2**32 - 1)


def rel_attention_dropout_keep(B: int, H: int, T: int, L: int, seed: int, dropout_p: float,
                               device=None) -> torch.Tensor:
    """The Triton attention kernels' dropout keep mask for (seed, dropout_p), bool [B, H, T, L].

    Philox4x32-10 keyed by the 64-bit seed, counter (b*H + h, i, j // 4, 0), word j % 4; key j of
    query i is kept when that word is >= ``dropout_threshold(dropout_p)`` (``kernel.py``).
    """
    G = (L + 3) // 4
    shape = (B * H, T, G)
    ar = lambda n: torch.arange(n, dtype=torch.int64, device=device)  # noqa: E731
    c0 = ar(B * H)[:, None, None].expand(shape)
    c1 = ar(T)[None, :, None].expand(shape)
    c2 = ar(G)[None, None, :].expand(shape)
    zero = torch.zeros(shape, dtype=torch.int64, device=device)
    words = philox4x32(c0, c1, c2, zero, seed & MASK32, (seed >> 32) & MASK32)
    bits = torch.stack(words, dim=-1).reshape(B * H, T, 4 * G)[..., :L]
    return (bits >= dropout_threshold(dropout_p)).reshape(B, H, T, L)
