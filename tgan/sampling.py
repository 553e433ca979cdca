"""Autoregressive sampling from the generator with a bounded key/value cache.

Each token costs one ``TransformerXL.step`` over at most ``context`` cached positions, so the cost
per token does not grow with the sample length beyond the memory length. Token choice is one
``tgan.ops.sample_logits`` call (Gumbel-max with temperature / top-k / top-p, no host sync).
"""
from __future__ import annotations

import torch

from tgan.ops import sample_logits
from tgan.ops.philox import seed_stream


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
                    token_seconds: torch.Tensor | None = None, cache: str | None = None) -> torch.Tensor:
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
    eos_fill = torch.full((batch_size,), eos_id if eos_id is not None else 0, device=device)
    if max_seconds is not None:
        token_seconds = token_seconds.to(device)
        elapsed = token_seconds[torch.stack(out, 1)].sum(1) if out else torch.zeros(batch_size, device=device)
    # one host draw seeds every token's noise (a separate seed per token, no draw per token)
    with seed_stream(g):
        while len(out) < length:
            logits = never_sample(logits, gen.cfg.pad_id)
            nxt = sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=g)
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
            if len(out) < length:
                logits = gen.step(nxt, state, max_context=context)
    gen.train(was)
    return torch.stack(out, dim=1)
