"""Segment-recurrent relative (Transformer-XL) attention: checks, dispatch and the public op.

``rel_attention(q [B, T, H, D], k, v [B, M+T, H, D], r [R >= M+T, H, D], u, vb [H, D])
-> [B, T, H, D]``: T queries over M memory + T current keys, causal. The Triton path is
``triton.py`` (launchers, custom ops, autograd) over ``kernel.py``; the reference is ``naive.py``.
"""
from __future__ import annotations

import torch

from tgan.ops.rel_attention import naive
from tgan.ops._backend import use_triton


def _check(q, k, v, r, u, vb):
    if q.dim() != 4:
        raise ValueError(f"rel_attention: q must be [B, T, H, D], got shape {tuple(q.shape)}")
    B, T, H, D = q.shape
    if k.dim() != 4 or k.shape[0] != B or k.shape[2:] != (H, D) or k.shape[1] < T:
        raise ValueError(
            f"rel_attention: k must be [B={B}, M+T>={T}, H={H}, D={D}], got {tuple(k.shape)}"
        )
    if v.shape != k.shape:
        raise ValueError(f"rel_attention: v must have k's shape {tuple(k.shape)}, got {tuple(v.shape)}")
    L = k.shape[1]
    if r.dim() != 3 or r.shape[1:] != (H, D) or r.shape[0] < L:
        raise ValueError(
            f"rel_attention: r must be [R>={L} (M+T), H={H}, D={D}], got {tuple(r.shape)}"
        )
    for name, t in (("u", u), ("vb", vb)):
        if t.shape != (H, D):
            raise ValueError(f"rel_attention: {name} must be [H={H}, D={D}], got {tuple(t.shape)}")
    for name, t in (("k", k), ("v", v), ("r", r), ("u", u), ("vb", vb)):
        if t.dtype != q.dtype:
            raise TypeError(f"rel_attention: {name} has dtype {t.dtype}, q has {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"rel_attention: {name} is on {t.device}, q is on {q.device}")
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"rel_attention: unsupported dtype {q.dtype}")


def rel_attention(q, k, v, r, u, vb, scale=None, dropout_p=0.0):
    """Transformer-XL relative attention of T queries over M memory + T current keys, causal.

    Args:
        q: [B, T, H, D] queries of the current segment.
        k, v: [B, M+T, H, D] keys and values of [memory; segment].
        r: [R, H, D], R >= M+T: the layer's projected sinusoidal relative embedding, row d for
           distance d (0 .. R-1).
        u, vb: [H, D] learned content and position biases.
        scale: score scale, default D**-0.5.
        dropout_p: attention-probability dropout (training only). The Triton path draws its
            mask in-kernel (Philox, seeded from torch's default CPU generator, so
            torch.manual_seed repeats it); it is not the mask F.dropout draws on the torch path.

    Returns:
        [B, T, H, D]. Query i (absolute position M+i) sees keys j <= M+i with
        score = ((q_i+u)·k_j + (q_i+vb)·r_{M+i-j}) * scale.
    """
    _check(q, k, v, r, u, vb)
    if use_triton("rel_attention", q, k, v, r):
        from tgan.ops.rel_attention import triton as impl  # kernels are optional at import

        return impl.rel_attention(q, k, v, r, u, vb, scale=scale, dropout_p=dropout_p)
    return naive.rel_attention(q, k, v, r, u, vb, scale=scale, dropout_p=dropout_p)
