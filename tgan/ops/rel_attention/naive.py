"""Pure-PyTorch references for every op, with the same signatures as the public ops.

They are the ground truth in tests and the path taken on the CPU under ``TGAN_BACKEND=auto``.
Written for clarity, not speed: they materialise the full [.., T, M+T] or [.., V] tensors the
kernels avoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


# ---- Gumbel-softmax straight-through sampling, top-k / top-p sampling (tgan.ops.gumbel_softmax) ----
# The noise is the kernels' own: Philox4x32-10, key = seed, counter (row, col // 4, offset_lo,
# offset_hi), word col % 4, then the same uniform -> Gumbel map (see kernels/gumbel_softmax.py), so
# the same seed gives the same samples on either backend.

_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = 0xFFFFFFFF


def draw_seed(generator=None) -> int:
    """A seed in [0, 2^63) from a CPU generator (torch's default one when None): no device sync."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


def _mulhilo32(a: int, b: torch.Tensor):
    """(high, low) 32-bit words of a * b for a uint32 constant and int64 tensor b in [0, 2^32).

    Split b in 16-bit halves so that no product leaves int64.
    """
    p_hi, p_lo = a * (b >> 16), a * (b & 0xFFFF)  # each < 2^48
    return (p_hi + (p_lo >> 16)) >> 16, (((p_hi & 0xFFFF) << 16) + p_lo) & _MASK32


def philox4x32(c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 of counter words c0..c3 (int64 tensors in [0, 2^32)) under key (k0, k1)."""
    for _ in range(10):
        hi0, lo0 = _mulhilo32(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def philox_bits(rows: int, V: int, seed: int, offset: int, device=None) -> torch.Tensor:
    """The kernels' 32 random bits of every element of a [rows, V] problem, int64 in [0, 2^32)."""
    G = (V + 3) // 4
    c0 = torch.arange(rows, dtype=torch.int64, device=device)[:, None].expand(rows, G)
    c1 = torch.arange(G, dtype=torch.int64, device=device)[None, :].expand(rows, G)
    c2 = torch.full((rows, G), offset & _MASK32, dtype=torch.int64, device=device)
    c3 = torch.full((rows, G), (offset >> 32) & _MASK32, dtype=torch.int64, device=device)
    words = philox4x32(c0, c1, c2, c3, seed & _MASK32, (seed >> 32) & _MASK32)
    return torch.stack(words, dim=-1).reshape(rows, 4 * G)[:, :V]


def dropout_threshold(dropout_p: float) -> int:
    """floor(p * 2^32): the Triton attention kernels drop a key when its 32 random bits are below it."""
    return min(int(dropout_p * 2**32), 2**32 - 1)


def rel_attention_dropout_keep(B: int, H: int, T: int, L: int, seed: int, dropout_p: float,
                               device=None) -> torch.Tensor:
    """The Triton attention kernels' dropout keep mask for (seed, dropout_p), bool [B, H, T, L].

    Philox4x32-10 keyed by the 64-bit seed, counter (b*H + h, i, j // 4, 0), word j % 4; key j of
    query i is kept when that word is >= ``dropout_threshold(dropout_p)`` (kernels/rel_attention.py).
    """
    G = (L + 3) // 4
    shape = (B * H, T, G)
    ar = lambda n: torch.arange(n, dtype=torch.int64, device=device)  # noqa: E731
    c0 = ar(B * H)[:, None, None].expand(shape)
    c1 = ar(T)[None, :, None].expand(shape)
    c2 = ar(G)[None, None, :].expand(shape)
    zero = torch.zeros(shape, dtype=torch.int64, device=device)
    words = philox4x32(c0, c1, c2, zero, seed & _MASK32, (seed >> 32) & _MASK32)
    bits = torch.stack(words, dim=-1).reshape(B * H, T, 4 * G)[..., :L]
    return (bits >= dropout_threshold(dropout_p)).reshape(B, H, T, L)


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
