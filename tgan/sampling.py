"""Autoregressive sampling from the generator with a bounded key/value cache.

Each token costs one ``TransformerXL.step`` over at most ``context`` cached positions, so the cost
per token does not grow with the sample length beyond the memory length. Token choice is one
``tgan.ops.sample_logits`` call (Gumbel-max with temperature / top-k / top-p, no host sync).

``TGAN_DECODE`` (or ``generate_tokens(decode=...)``) chooses how the tokens after the first
``context`` are made:
  - ``eager`` (default): ``TransformerXL.step`` over the sliding-window KV cache;
  - ``static``: ``StaticDecoder``, a ring cache of fixed size whose position and noise counter
    live on the device, so every token step has the same shapes, addresses and arguments; the
    same noise, and so the same tokens, as ``eager`` for a seed;
  - ``graph``: ``static`` with the whole token step (embedding, layers, cache writes, sampling)
    compiled by ``torch.compile`` (``mode="reduce-overhead"``: one CUDA graph per token on a GPU).
"""
from __future__ import annotations

import os
import weakref

import torch

from tgan.ops import sample_logits, use_triton
from tgan.ops.gumbel_softmax import naive as gumbel_naive
from tgan.ops.philox import draw_seed

DECODE_MODES = ("eager", "static", "graph")


def decode_mode(decode: str | None = None) -> str:
    """``decode``, or ``TGAN_DECODE`` when None (default "eager"), validated."""
    raw = decode if decode is not None else (os.environ.get("TGAN_DECODE", "eager").strip().lower() or "eager")
    if raw not in DECODE_MODES:
        src = "decode" if decode is not None else "TGAN_DECODE"
        raise ValueError(f"{src} must be one of {DECODE_MODES}, got {raw!r}")
    return raw


def never_sample(logits: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """``logits`` [.., V] with PAD made impossible (-inf), so no sampler emits it.

    PAD is in the generator's output vocabulary (ids 0..lm_size-1) but never a real token: a
    sampled PAD would be an error in a sample and, in a rollout, a trivial tell for D. MASK is not
    in the generator's vocabulary at all (the vocabulary puts it last, beyond ``lm_size``). The
    gradient through the masked entries is 0, so straight-through rollouts keep theirs elsewhere.
    """
    if pad_id is None or not 0 <= pad_id < logits.shape[-1]:
        return logits
    return logits.masked_fill(_banned(logits.shape[-1], pad_id, logits.device), float("-inf"))


_BANNED: dict = {}


def _banned(V: int, pad_id: int, device) -> torch.Tensor:
    """The bool [V] mask of PAD, built once per (V, PAD, device): one op per token, not three."""
    key = (V, pad_id, torch.device(device))
    mask = _BANNED.get(key)
    if mask is None:
        mask = torch.zeros(V, dtype=torch.bool, device=device)
        mask[pad_id] = True
        _BANNED[key] = mask
    return mask


@torch.no_grad()
def generate_tokens(gen, batch_size: int, length: int, primer: torch.Tensor | None = None,
                    temperature: float = 0.95, top_k: int = 32, top_p: float = 1.0,
                    context: int | None = None, eos_id: int | None = None, seed: int | None = None,
                    device="cpu", progress=None, max_seconds: float | None = None,
                    token_seconds: torch.Tensor | None = None, cache: str | None = None,
                    decode: str | None = None) -> torch.Tensor:
    """Sample ``length`` tokens per sequence (primer included).

    Args:
        gen: a TransformerXL (put in eval mode here).
        batch_size: number of samples.
        length: total tokens per sample, primer included.
        primer: None (start from an empty context) or LongTensor [P] / [B, P] of real tokens.
        temperature, top_k, top_p: sampling controls (top_k=0 and top_p=1 disable them).
        context: cached positions a token attends to (default the generator's eval_mem_len).
        eos_id: if given, a sequence that samples it is padded with it from then on.
        seed: seed for the sampling noise (None draws from torch's default generator).
        progress: optional tqdm bar advanced once per token.
        max_seconds, token_seconds: stop early once every sample spans ``max_seconds`` of music,
            ``token_seconds`` [V] giving the time each id advances (TIME_SHIFT ids, 0 elsewhere);
            checked every 32 tokens to keep host synchronisation rare.
        cache: the key/value cache implementation (``tgan.ops.kv_cache``; None = "auto"). Its
            capacity is twice the context, so the sliding window moves to the buffer's front once
            every ``context`` tokens instead of being copied at every token.
        decode: "eager", "static" or "graph" for the tokens once ``context`` positions are cached
            (module docstring); None reads ``TGAN_DECODE``. The first ``context`` tokens always
            run eagerly. Token ``n`` of the call draws its noise from (one seed drawn per call,
            offset n), whichever mode.

    PAD is never sampled (``never_sample``); MASK is outside the generator's vocabulary.

    Returns:
        LongTensor [B, length].
    """
    if length <= 0:
        raise ValueError(f"generate_tokens: length must be > 0, got {length}")
    if max_seconds is not None and token_seconds is None:
        raise ValueError("generate_tokens: max_seconds needs token_seconds (the seconds each id advances)")
    was = gen.training
    gen.eval()
    context = gen.cfg.eval_mem_len if context is None else context
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    if primer is not None:
        primer = torch.as_tensor(primer, dtype=torch.long, device=device)
        primer = primer.expand(batch_size, -1) if primer.dim() == 1 else primer
        if primer.shape[1] >= length:
            raise ValueError(f"generate_tokens: primer has {primer.shape[1]} tokens, length asked is {length}")
        out = [primer[:, i] for i in range(primer.shape[1])]
    else:
        out = []
    state = gen.init_state(None, batch_size=batch_size, cache=cache, capacity=min(2 * (context + 1), length + 1))
    # Start token: with no primer, EOS stands for "start of piece" (training crops that begin a
    # piece put EOS before it, see tgan.gan.data_feed).
    first = out[0] if out else torch.full((batch_size,), eos_id if eos_id is not None else 0, device=device)
    logits = gen.step(first, state, max_context=context)
    if progress is not None and out:
        progress.update(1)  # the primer's first token
    for tok in out[1:]:
        logits = gen.step(tok, state, max_context=context)
        if progress is not None:
            progress.update(1)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    eos_fill = None if eos_id is None else torch.full((batch_size,), eos_id, device=device)
    if max_seconds is not None:
        token_seconds = token_seconds.to(device)
        elapsed = token_seconds[torch.stack(out, 1)].sum(1) if out else torch.zeros(batch_size, device=device)
    mode = decode_mode(decode)
    base = draw_seed(g)  # one host draw: sampled token n's noise is (base, offset n)
    n_primer = len(out)
    static = None
    while len(out) < length:
        if static is None:
            nxt = sample_logits(never_sample(logits, gen.cfg.pad_id), temperature=temperature, top_k=top_k,
                                top_p=top_p, seed=base, offset=len(out) - n_primer)
        elif logits is not None:  # the eager step's logits, computed before the switch
            nxt, logits = static.sample(logits), None
        else:
            nxt = static.next_token(out[-1])
        if eos_id is not None:
            nxt = torch.where(done, eos_fill, nxt)
            done |= nxt == eos_id
        out.append(nxt)
        if progress is not None:
            progress.update(1)
        if max_seconds is not None:
            elapsed += token_seconds[nxt]
            if len(out) % 32 == 0 and bool((elapsed >= max_seconds).all()):
                break
        if len(out) < length and static is None:
            logits = gen.step(nxt, state, max_context=context)
            if mode != "eager" and state.length > context:  # the window is full: static from here
                static = static_decoder(gen, state, context, temperature, top_k, top_p, seed=base,
                                        offset=len(out) - n_primer, compiled=mode == "graph")
    gen.train(was)
    return torch.stack(out, dim=1)


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_decoder(gen, state, context: int, temperature: float, top_k: int, top_p: float, seed: int,
                   offset: int, compiled: bool = False) -> "StaticDecoder":
    """A ``StaticDecoder`` of ``gen`` loaded from ``state``: one per model, batch, window, dtype,
    device, sampling settings and mode, kept while the model lives and reloaded in place by each
    call, so that its buffers keep their addresses (a compiled step is compiled and captured once,
    not once per ``generate_tokens`` call)."""
    k0 = state.cache.keys(0)
    key = (k0.shape[0], int(context), k0.dtype, str(k0.device), float(temperature), int(top_k),
           float(top_p), bool(compiled), use_triton("sample_logits", k0))
    per = _DECODERS.setdefault(gen, {})
    dec = per.get(key)
    if dec is None:
        dec = per[key] = StaticDecoder(gen, state, context, temperature, top_k, top_p, seed, offset,
                                       compiled=compiled)
    else:
        dec.load(state, seed, offset)
    return dec


class StaticDecoder(torch.nn.Module):
    """No-grad token steps over a ring cache of fixed size, with every position on the device.

    Made from a ``DecodeState`` whose window is full (``context`` positions and the newest token):
    each layer keeps keys and values in [B, W, H, D] buffers, W = context + 1, that a token step
    writes in place at slot ``slot`` (a device tensor advanced by the step), and its projected
    relative embeddings [W, H, D], of which each step takes the rows in the ring's order (an
    index by the same tensor). The noise counter is a device tensor as well. Every step then has
    the same shapes, buffer addresses and arguments: what a CUDA graph replays. ``compiled``
    compiles ``next_token`` with ``torch.compile(mode="reduce-overhead", fullgraph=True)`` on a
    GPU (plain ``torch.compile`` elsewhere). ``load`` refills it from another state (and the
    model's current weights) in place; ``static_decoder`` keeps one per configuration.

    Layer outputs are those of ``TransformerXL.step`` over the sliding window: the attention sees
    the same keys, values and distances, in another order. Sampling is the eager decoder's at the
    same seed and offsets: on the Triton path its kernel, reading the seed and the offset from
    the device buffers (``tgan.ops.gumbel_softmax.triton.sample_logits_on_device``, one op that
    ``torch.compile`` keeps whole); on the torch path the PyTorch reference, which compiles into
    the graph. Either way the Philox bits and their map to Gumbel noise are the eager decoder's.
    """

    def __init__(self, gen, state, context: int, temperature: float, top_k: int, top_p: float,
                 seed: int, offset: int, compiled: bool = False):
        super().__init__()
        W = context + 1
        # a weak reference (and not a submodule): the decoders kept per model must not keep it alive
        object.__setattr__(self, "_gen", weakref.ref(gen))
        self.W, self.settings = W, (float(temperature), int(top_k), float(top_p))
        cfg, like = gen.cfg, gen.embed.weight
        k0 = state.cache.keys(0)
        B, dev = k0.shape[0], like.device
        for layer in range(cfg.n_layer):
            for name in ("k", "v"):
                self.register_buffer(f"{name}{layer}", k0.new_zeros(B, W, cfg.n_head, cfg.d_head))
            self.register_buffer(f"r{layer}", k0.new_zeros(W, cfg.n_head, cfg.d_head))
        self.register_buffer("slot", torch.tensor(W - 1, device=dev))  # the newest token's slot
        self.register_buffer("ring", torch.arange(W, device=dev))
        self.register_buffer("seed", torch.tensor(0, dtype=torch.int64, device=dev))
        self.register_buffer("offset", torch.tensor(0, dtype=torch.int64, device=dev))
        # the eager decoder's sampler: the kernel where sample_logits would run it
        self._triton = use_triton("sample_logits", like)
        self.load(state, seed, offset)
        self._next = self._next_token
        self.compiled = bool(compiled)
        if compiled:
            for buf in self.buffers():  # written in place by every replay: fixed addresses
                torch._dynamo.mark_static_address(buf)
            mode = "reduce-overhead" if dev.type == "cuda" else None
            self._next = torch.compile(self._next_token, mode=mode, fullgraph=True)

    @property
    def gen(self):
        """The model decoded (held weakly)."""
        return self._gen()

    @torch.no_grad()
    def load(self, state, seed: int, offset: int) -> None:
        """Copy a full window of ``state`` (its last W positions, oldest in slot 0), the model's
        relative embeddings and the noise's (seed, offset) into the buffers, in place."""
        gen, W = self.gen, self.W
        if state.length < W:
            raise ValueError(f"StaticDecoder: the state's window holds {state.length} positions, "
                             f"needs context + 1 = {W}")
        cache, like = state.cache, gen.embed.weight
        for layer in range(gen.cfg.n_layer):
            getattr(self, f"k{layer}").copy_(cache.keys(layer)[:, -W:])
            getattr(self, f"v{layer}").copy_(cache.values(layer)[:, -W:])
            getattr(self, f"r{layer}").copy_(gen.attn[layer].rel(gen.pos_emb(W, like)))
        self.slot.fill_(W - 1)
        self.seed.fill_(int(seed))
        self.offset.fill_(int(offset))

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        temperature, top_k, top_p = self.settings
        logits = never_sample(logits, self.gen.cfg.pad_id)
        if self._triton:
            from tgan.ops.gumbel_softmax import triton as gumbel_triton

            out = gumbel_triton.sample_logits_on_device(logits.contiguous(), self.seed, self.offset,
                                                        temperature, top_k, top_p)
        else:
            noise = gumbel_naive.gumbel_noise(logits.shape, self.seed, self.offset,
                                              device=logits.device)
            out = gumbel_naive.sample_logits(logits, temperature, top_k, top_p, noise=noise)
        self.offset.add_(1)
        return out

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        gen, W = self.gen, self.W
        slot = (self.slot + 1) % W
        self.slot.copy_(slot)
        # row d of the ring-ordered r: the distance from the newest token to the key in slot
        # W - 1 - d's place, i.e. r[(d + slot + 1) mod W]
        order = (self.ring + slot + 1) % W
        h = gen.embed_input(x[:, None])  # [B, 1, d]
        for layer in range(gen.cfg.n_layer):
            attn = gen.attn[layer]
            k_new, v_new = attn.kv(h)
            k, v = getattr(self, f"k{layer}"), getattr(self, f"v{layer}")
            k.index_copy_(1, slot.view(1), k_new.to(k.dtype))
            v.index_copy_(1, slot.view(1), v_new.to(v.dtype))
            r = getattr(self, f"r{layer}").index_select(0, order)
            h = gen.ff[layer](attn.attend(h, k, v, r))
        return gen.logits(h[:, 0])

    def _next_token(self, x: torch.Tensor) -> torch.Tensor:
        return self._sample(self._step(x))

    @torch.no_grad()
    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """A token per row from ``logits`` [B, V] (the step before the switch), at the next offset."""
        return self._sample(logits)

    @torch.no_grad()
    def next_token(self, x: torch.Tensor) -> torch.Tensor:
        """Feed ids ``x`` [B] and sample the next ids [B]: one step (one graph replay when compiled).

        Compiled, the ids come back copied out of the graph's output buffer, which the next replay
        overwrites (callers keep every token)."""
        if not self.compiled:
            return self._next(x)
        torch.compiler.cudagraph_mark_step_begin()  # the previous replay's outputs are consumed
        return self._next(x).clone()
