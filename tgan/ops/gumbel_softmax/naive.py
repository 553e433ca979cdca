"""Straight-through Gumbel-softmax and top-k / top-p sampling in plain PyTorch: the references.

Same signatures as the public ops. The noise is the kernels' own: Philox4x32-10, key = seed,
counter (row, col // 4, offset_lo, offset_hi), word col % 4, then the same uniform -> Gumbel map
(``kernel.py``), so the same seed gives the same samples on either backend. Written for clarity:
they materialise the [..., V] tensors the kernels avoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tgan.ops.philox import draw_seed, philox_bits


def gumbel_noise(shape, seed, offset=0, device=None):
    """The kernels' Gumbel noise for (seed, offset) as float32 [*shape] (reference)."""
    shape = tuple(shape)
    V = shape[-1]
    rows = 1
    for s in shape[:-1]:
        rows *= s
    bits = philox_bits(rows, V, seed, offset, device)
    u = (bits.to(torch.float32) + 0.5) * 2.0**-32
    u = u.clamp(max=1.0 - 2.0**-24)
    w = 1.0 - u
    e = torch.where(w == 1.0, u, -torch.log(w) * (u / (1.0 - w)))  # -log1p(-u)
    return (-torch.log(e)).reshape(shape)


def gumbel_softmax_st(logits, beta, noise=None, seed=None, offset=0, embedding=None, generator=None):
    """Straight-through Gumbel-softmax (reference; see ``tgan.ops.gumbel_softmax_st``).

    logits [..., V]; noise [..., V] or None (then Philox noise of seed, drawn from generator if
    None); embedding [V, E] or None. Returns (y_st [..., V] or [..., E], index [...] int64).
    """
    V = logits.shape[-1]
    if noise is None:
        seed = draw_seed(generator) if seed is None else seed
        noise = gumbel_noise(logits.shape, seed, offset, device=logits.device)
    z = logits.float() + noise.float()
    index = z.argmax(dim=-1)
    y_soft = torch.softmax(beta * z, dim=-1)
    # The value is exactly the one-hot (s - s == 0); the gradient is the softmax's.
    y_st = F.one_hot(index, V).float() + (y_soft - y_soft.detach())
    if embedding is None:
        return y_st.to(logits.dtype), index
    return (y_st @ embedding.float()).to(embedding.dtype), index


@torch.no_grad()
def sample_logits(logits, temperature=1.0, top_k=0, top_p=1.0, noise=None, seed=None, offset=0,
                  generator=None):
    """Temperature / top-k / top-p sampling by Gumbel-max (reference; see ``tgan.ops.sample_logits``).

    logits [..., V] -> int64 [...]. Top-k keeps logits >= the k-th largest; top-p keeps the
    tokens whose probability e satisfies e >= tau, tau the largest e with sum(e' >= e) >= top_p.
    """
    x = logits.float()
    V = x.shape[-1]
    if temperature == 0.0:
        return x.argmax(dim=-1)
    keep = torch.ones_like(x, dtype=torch.bool)
    if 0 < top_k < V:
        keep = x >= x.topk(top_k, dim=-1).values[..., -1:]
    xs = x * (1.0 / temperature)
    if top_p < 1.0:
        m = xs.masked_fill(~keep, float("-inf")).amax(dim=-1, keepdim=True)
        e = torch.exp(xs - m).masked_fill(~keep, 0.0)
        asc = e.sort(dim=-1).values
        above = asc.flip(-1).cumsum(-1).flip(-1)  # above[j] = sum of asc[j:]
        mass = above.gather(-1, torch.searchsorted(asc, e))  # sum of e' >= e
        ok = mass >= top_p * e.sum(dim=-1, keepdim=True)
        tau = e.masked_fill(~ok, -1.0).amax(dim=-1, keepdim=True)
        keep &= e >= tau
    if noise is None:
        seed = draw_seed(generator) if seed is None else seed
        noise = gumbel_noise(x.shape, seed, offset, device=x.device)
    z = (xs + noise.float()).masked_fill(~keep, float("-inf"))
    return z.argmax(dim=-1)
