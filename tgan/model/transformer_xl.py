"""Transformer-XL generator: relative attention over [memory; segment], post-LayerNorm, tied embeddings.

Two ways in:
  - ``forward(x, mems)``: a whole segment (training, validation, priming). ``x`` is token ids [B, T]
    or a float [B, T, V] one-hot / soft distribution (straight-through rollouts).
  - ``step(x_t, state)``: one token per call over a cache of keys/values (sampling and rollouts),
    so the cost of a token does not grow with the sample length beyond the memory length.

Memory follows Transformer-XL: ``mems[l]`` holds the last ``mem_len`` inputs of layer ``l``; keys and
values of memory positions are projected from them with the layer's current weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from tgan.model.config import GeneratorConfig
from tgan.model.segment_grad import SegmentLinears
from tgan.ops import KVCache, rel_attention


def sinusoid(length: int, d_model: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal embeddings of distances 0 .. length-1: [length, d_model] (sin half, then cos half)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d_model, 2, device=device, dtype=torch.float32) / d_model))
    pos = torch.arange(length, device=device, dtype=torch.float32)
    ang = pos[:, None] * inv_freq[None, :]
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1)[:, :d_model]
    return emb.to(dtype)


class RelAttentionLayer(nn.Module):
    """Relative multi-head attention + residual + LayerNorm (post-norm)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        H, D = cfg.n_head, cfg.d_head
        self.n_head, self.d_head = H, D
        self.q_net = nn.Linear(cfg.d_model, H * D, bias=False)
        self.kv_net = nn.Linear(cfg.d_model, 2 * H * D, bias=False)
        self.r_net = nn.Linear(cfg.d_model, H * D, bias=False)  # W_r: projects the sinusoids
        self.o_net = nn.Linear(H * D, cfg.d_model, bias=False)
        self.u = nn.Parameter(torch.zeros(H, D))  # content bias
        self.vb = nn.Parameter(torch.zeros(H, D))  # position bias
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.attn_dropout
        self.norm = nn.LayerNorm(cfg.d_model)

    def kv(self, h: torch.Tensor, lin: SegmentLinears | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, L, H, D] of hidden states [B, L, d_model]. ``lin``: a token step's
        segment linears (``SegmentLinears``), None for plain layers."""
        B, L, _ = h.shape
        kv = self.kv_net(h) if lin is None else lin.module(self.kv_net, h)
        k, v = kv.view(B, L, 2, self.n_head, self.d_head).unbind(2)
        return k, v

    def rel(self, pos_emb: torch.Tensor) -> torch.Tensor:
        """Projected relative embeddings [L, H, D] of sinusoids [L, d_model] (distance order)."""
        return self.r_net(pos_emb).view(-1, self.n_head, self.d_head)

    def attend(self, h, k, v, r, lin: SegmentLinears | None = None) -> torch.Tensor:
        """Queries from ``h`` [B, T, d] over keys/values [B, M+T, H, D]; returns the layer output.
        ``lin``: as in ``kv``."""
        B, T, _ = h.shape
        q = (self.q_net(h) if lin is None else lin.module(self.q_net, h)).view(B, T, self.n_head, self.d_head)
        p = self.attn_dropout if self.training else 0.0
        a = rel_attention(q, k, v, r, self.u.to(q.dtype), self.vb.to(q.dtype), dropout_p=p)
        a = a.reshape(B, T, -1)
        return self.norm(h + self.drop(self.o_net(a) if lin is None else lin.module(self.o_net, a)))

    def forward(self, h, mem, pos_emb):
        cat = h if mem is None or mem.shape[1] == 0 else torch.cat([mem, h], dim=1)
        k, v = self.kv(cat)
        return self.attend(h, k, v, self.rel(pos_emb[: cat.shape[1]]))


class FeedForward(nn.Module):
    """Position-wise feed-forward + residual + LayerNorm (post-norm)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_inner), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_inner, cfg.d_model), nn.Dropout(cfg.dropout),
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, h, lin: SegmentLinears | None = None):
        """``lin``: a token step's segment linears (``SegmentLinears``), None for plain layers."""
        if lin is None:
            return self.norm(h + self.net(h))
        fc1, _, drop1, fc2, drop2 = self.net  # the ReLU out of place: fc1's output is a custom op's
        return self.norm(h + drop2(lin.module(fc2, drop1(F.relu(lin.module(fc1, h))))))


@dataclass
class DecodeState:
    """Keys/values of the positions a next token attends to (a ``KVCache``), plus the layer inputs
    (hidden states) of the tokens generated since the last memory refresh.

    ``cache.keys(l)``, ``cache.values(l)``: [B, L, H, D] views; ``hidden[l]``: list of [B, 1, d]
    tensors, one per step; ``r[l]``: the layer's projected relative embeddings [R, H, D], computed
    once per state; ``linears``: the steps' linear layers with their weight gradients summed once
    per state (``SegmentLinears``), None when the state was made without gradient.
    """

    cache: KVCache
    mems: list  # layer inputs [B, M, d] the cache was built from
    hidden: list = field(default_factory=list)
    r: list = field(default_factory=list)
    linears: SegmentLinears | None = None

    @property
    def length(self) -> int:
        return self.cache.length(0)


class TransformerXL(nn.Module):
    """The generator G. See the module docstring for the two ways in."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.emb_scale = math.sqrt(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn = nn.ModuleList(RelAttentionLayer(cfg) for _ in range(cfg.n_layer))
        self.ff = nn.ModuleList(FeedForward(cfg) for _ in range(cfg.n_layer))
        self.out_bias = nn.Parameter(torch.zeros(cfg.vocab_size))  # output layer tied to self.embed
        self.apply(self._init)
        self._pos_cache: torch.Tensor | None = None

    def _init(self, m):
        std = self.cfg.init_std
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, RelAttentionLayer):
            nn.init.normal_(m.u, 0.0, std)
            nn.init.normal_(m.vb, 0.0, std)

    # -- helpers ---------------------------------------------------------------------------------
    def pos_emb(self, length: int, like: torch.Tensor) -> torch.Tensor:
        """Sinusoids for distances 0..length-1 on ``like``'s device/dtype (cached, grown on demand)."""
        c = self._pos_cache
        if c is None or c.shape[0] < length or c.device != like.device or c.dtype != like.dtype:
            n = max(length, 2 * (c.shape[0] if c is not None else 0), 256)
            c = self._pos_cache = sinusoid(n, self.cfg.d_model, like.device, like.dtype)
        return c[:length]

    def embed_input(self, x: torch.Tensor, lin: SegmentLinears | None = None) -> torch.Tensor:
        """Token ids [B, T] or float one-hot/soft [B, T, V] -> scaled embeddings [B, T, d].
        ``lin``: a token step's segment linears (``SegmentLinears``), None for plain layers."""
        if x.dtype in (torch.long, torch.int32, torch.int16, torch.int64):
            e = self.embed(x.long())
        elif x.is_floating_point():
            if x.shape[-1] != self.cfg.vocab_size:
                raise ValueError(
                    f"TransformerXL: soft input last dim must be vocab_size={self.cfg.vocab_size}, "
                    f"got {tuple(x.shape)}"
                )
            if lin is None:
                e = x.to(self.embed.weight.dtype) @ self.embed.weight
            else:
                e = lin.matmul(x, self.embed.weight, linear_bias=self.out_bias)
        else:
            raise TypeError(f"TransformerXL: input must be integer ids or float one-hots, got {x.dtype}")
        return self.drop(e * self.emb_scale)

    def logits(self, h: torch.Tensor, lin: SegmentLinears | None = None) -> torch.Tensor:
        """Tied output layer: [.., d] -> [.., V]. ``lin``: as in ``embed_input``."""
        if lin is None:
            return F.linear(h, self.embed.weight, self.out_bias)
        return lin.linear(h, self.embed.weight, self.out_bias)

    def mem_len(self) -> int:
        return self.cfg.mem_len if self.training else self.cfg.eval_mem_len

    # -- segments ----------------------------------------------------------------------------------
    def forward(self, x, mems=None, mem_len=None, detach_mems=True):
        """Run one segment.

        Args:
            x: [B, T] token ids or [B, T, V] float one-hot / soft input.
            mems: None or a list of n_layer tensors [B, M, d_model] (layer inputs of earlier tokens).
            mem_len: how many positions the returned memory keeps (default: ``cfg.mem_len`` in
                training mode, ``cfg.eval_mem_len`` in eval mode).
            detach_mems: detach the returned memory (Transformer-XL); False keeps the graph so a
                later segment's loss reaches this one (gradient into the memory).

        Returns:
            (logits [B, T, V], new_mems: list of n_layer tensors [B, min(M+T, mem_len), d_model]).
        """
        if x.dim() not in (2, 3):
            raise ValueError(f"TransformerXL.forward: x must be [B, T] or [B, T, V], got {tuple(x.shape)}")
        h = self.embed_input(x)
        B, T, _ = h.shape
        M = 0 if mems is None else mems[0].shape[1]
        if mems is not None and len(mems) != self.cfg.n_layer:
            raise ValueError(f"TransformerXL.forward: mems must have {self.cfg.n_layer} layers, got {len(mems)}")
        pos = self.pos_emb(M + T, h)
        inputs = []
        for layer in range(self.cfg.n_layer):
            inputs.append(h)
            mem = None if mems is None else mems[layer]
            h = self.attn[layer](h, mem, pos)
            h = self.ff[layer](h)
        keep = self.mem_len() if mem_len is None else mem_len
        new_mems = self._update_mems(mems, inputs, keep, detach_mems)
        return self.logits(h), new_mems

    @staticmethod
    def _update_mems(mems, inputs, keep, detach):
        out = []
        for layer, h in enumerate(inputs):
            cat = h if mems is None else torch.cat([mems[layer], h], dim=1)
            cat = cat[:, max(0, cat.shape[1] - keep):] if keep > 0 else cat[:, :0]
            out.append(cat.detach() if detach else cat)
        return out

    # -- token by token ----------------------------------------------------------------------------
    # token steps with gradient sum their linear layers' weight gradients once per state
    # (``SegmentLinears``); False runs plain autograd (per-token weight gradients), the reference
    segment_grads: bool = True

    def init_state(self, mems, batch_size: int | None = None, cache: str | KVCache | None = None,
                   capacity: int | None = None) -> DecodeState:
        """A decoding state whose keys/values are projected from ``mems`` (with gradient to the
        projections when grad is enabled). ``mems=None`` starts from an empty context.

        Args:
            mems: None or n_layer tensors [B, M, d_model].
            batch_size: B when ``mems`` is None.
            cache: the key/value cache: an implementation name ("auto" (default), "cpp", "torch",
                "cat"; see ``tgan.ops.kv_cache``), or a ``KVCache`` to reuse (reset here; a rollout
                passes the previous segment's so that no buffer is allocated per segment).
            capacity: positions the cache holds before it grows (memory + the tokens to come);
                default M + ``mem_len()``. A step past it grows the buffers (or, with a sliding
                window and no pending graph, moves the window to their front).
        """
        if mems is None:
            if batch_size is None:
                raise ValueError("init_state: batch_size is required when mems is None")
            w = self.embed.weight
            mems = [w.new_zeros(batch_size, 0, self.cfg.d_model) for _ in range(self.cfg.n_layer)]
        B, M = mems[0].shape[0], mems[0].shape[1]
        cap = M + max(self.mem_len(), 1) if capacity is None else capacity
        if cap < max(M, 1):
            raise ValueError(f"init_state: capacity must be >= max(1, memory length {M}), got {cap}")
        cfg, w = self.cfg, self.embed.weight
        dtype = w.dtype
        if torch.is_autocast_enabled(w.device.type):  # projections come out in the autocast dtype
            dtype = torch.get_autocast_dtype(w.device.type)
        if isinstance(cache, KVCache) and cache.matches(cfg.n_layer, cfg.n_head, cfg.d_head, dtype, w.device):
            kv = cache
            kv.reset(batch=B, capacity=max(cap, kv.capacity or 0))
        else:
            impl = cache.impl if isinstance(cache, KVCache) else (cache or "auto")
            kv = KVCache(cfg.n_layer, B, cap, cfg.n_head, cfg.d_head, dtype, w.device, impl=impl, grow=True)
        if M > 0:
            for layer, m in enumerate(mems):
                kv.append(layer, *self.attn[layer].kv(m))
        n = cfg.n_layer
        lin = SegmentLinears() if self.segment_grads and torch.is_grad_enabled() and w.requires_grad else None
        return DecodeState(cache=kv, mems=list(mems), hidden=[[] for _ in range(n)], r=[None] * n,
                           linears=lin)

    def _rel_for_step(self, state: DecodeState, layer: int, length: int, like: torch.Tensor) -> torch.Tensor:
        """Projected relative embeddings [R >= length, H, D] of ``layer``, computed once per state.

        Projecting the sinusoids at every step cost O(L·d·H·D) per layer and token and kept an
        [L, H, D] tensor per step for backward; one projection per segment, sliced by rel_attention,
        gives the same values (rows are independent) and accumulates its gradient once.
        """
        r = state.r[layer]
        attn = self.attn[layer]
        stale = r is not None and torch.is_grad_enabled() and not r.requires_grad and attn.r_net.weight.requires_grad
        if r is None or r.shape[0] < length or stale:
            R = max(length, state.cache.capacity or 0, 2 * (0 if r is None else r.shape[0]))
            r = state.r[layer] = attn.rel(self.pos_emb(R, like))
        return r

    def step(self, x_t: torch.Tensor, state: DecodeState, max_context: int | None = None) -> torch.Tensor:
        """Feed one token per sequence and return next-token logits [B, V].

        Args:
            x_t: [B] token ids or [B, V] float one-hot / soft input (straight-through).
            state: a DecodeState from ``init_state``; updated in place (keys/values appended).
            max_context: keep at most this many past positions in the cache (sliding window);
                default ``mem_len()``. The cost per token is bounded by it.
        """
        if x_t.dim() != (2 if x_t.is_floating_point() else 1):
            raise ValueError(f"TransformerXL.step: x_t must be [B] ids or [B, V] floats, got {tuple(x_t.shape)}")
        x = x_t[:, None]  # [B, 1] or [B, 1, V]
        # with gradient, the linear layers' weight gradients are summed once per state
        lin = state.linears if torch.is_grad_enabled() else None
        h = self.embed_input(x, lin)  # [B, 1, d]
        limit = self.mem_len() if max_context is None else max_context
        L = min(state.length, limit) + 1  # positions attended: the window and the new token
        append = state.cache.append
        for layer in range(self.cfg.n_layer):
            attn = self.attn[layer]
            state.hidden[layer].append(h)
            k, v = append(layer, *attn.kv(h, lin), limit)  # [B, L, H, D] views of the cache
            h = self.ff[layer](attn.attend(h, k, v, self._rel_for_step(state, layer, L, h), lin), lin)
        return self.logits(h[:, 0], lin)

    def state_mems(self, state: DecodeState, mem_len: int | None = None, detach: bool = True) -> list:
        """Memory for the next segment: the last ``mem_len`` layer inputs of [state.mems; steps]."""
        keep = self.mem_len() if mem_len is None else mem_len
        inputs = [torch.cat(hs, dim=1) if hs else m[:, :0] for hs, m in zip(state.hidden, state.mems)]
        return self._update_mems(state.mems, inputs, keep, detach)
