"""Masking for discriminator pre-training: SpanBERT span masking and plain token MLM.

Span masking (the paper): spans of length ~ Geometric(p=0.2) clipped at 10 are masked until 15%
of the tokens are covered; each chosen *span* is replaced as a whole by MASK (80%), random tokens
(10%) or kept (10%). Token MLM (the released code): each token independently with the same
80/10/10 rule.
"""
from __future__ import annotations

import numpy as np
import torch

IGNORE = -100  # label of positions that carry no loss


def _replace(tokens, chosen_spans, mask_id, vocab_lo, vocab_hi, rng):
    out = tokens.copy()
    for s, e in chosen_spans:
        u = rng.random()
        if u < 0.8:
            out[s:e] = mask_id
        elif u < 0.9:
            out[s:e] = rng.integers(vocab_lo, vocab_hi, size=e - s)
    return out


def span_mask(tokens: np.ndarray, mask_id: int, vocab_range: tuple[int, int], rng: np.random.Generator,
              budget: float = 0.15, p: float = 0.2, max_span: int = 10, special=()) -> tuple[np.ndarray, np.ndarray]:
    """Span-mask one sequence.

    Args:
        tokens: [T] ids.
        mask_id: the MASK id.
        vocab_range: (lo, hi) ids random replacements are drawn from (the event ids).
        rng: numpy Generator.
        budget: fraction of tokens to mask (rounded, at least 1).
        p: geometric parameter of span lengths; max_span clips them.
        special: ids never masked (PAD, EOS).
    Returns:
        (inputs [T], labels [T]) with labels = the original id at masked positions, IGNORE elsewhere.
    """
    T = len(tokens)
    maskable = ~np.isin(tokens, np.asarray(list(special), dtype=tokens.dtype)) if special else np.ones(T, bool)
    goal = max(1, int(round(budget * int(maskable.sum())))) if maskable.any() else 0
    covered = np.zeros(T, bool)
    spans = []
    tries = 0
    while covered.sum() < goal and tries < 10 * T:
        tries += 1
        length = min(int(rng.geometric(p)), max_span, goal - int(covered.sum()))
        start = int(rng.integers(0, max(1, T - length + 1)))
        end = start + length
        if covered[start:end].any() or not maskable[start:end].all():
            continue
        covered[start:end] = True
        spans.append((start, end))
    inputs = _replace(tokens, spans, mask_id, *vocab_range, rng)
    labels = np.where(covered, tokens, IGNORE)
    return inputs, labels


def token_mask(tokens: np.ndarray, mask_id: int, vocab_range: tuple[int, int], rng: np.random.Generator,
               budget: float = 0.15, special=()) -> tuple[np.ndarray, np.ndarray]:
    """Plain BERT token masking (the released code's pre-training): each maskable token w.p. budget."""
    if special:
        maskable = ~np.isin(tokens, np.asarray(list(special), dtype=tokens.dtype))
    else:
        maskable = np.ones(len(tokens), bool)
    chosen = (rng.random(len(tokens)) < budget) & maskable
    spans = [(i, i + 1) for i in np.flatnonzero(chosen)]
    inputs = _replace(tokens, spans, mask_id, *vocab_range, rng)
    return inputs, np.where(chosen, tokens, IGNORE)


def mask_batch(batch: torch.Tensor, mode: str, mask_id: int, vocab_range: tuple[int, int],
               rng: np.random.Generator, special=()) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a [B, T] batch row by row with ``mode`` = ``span`` or ``token``; returns (inputs, labels)."""
    if mode not in ("span", "token"):
        raise ValueError(f"mask_batch: mode must be 'span' or 'token', got {mode!r}")
    fn = span_mask if mode == "span" else token_mask
    rows = [fn(r, mask_id, vocab_range, rng, special=special) for r in batch.cpu().numpy()]
    inputs = torch.from_numpy(np.stack([r[0] for r in rows])).to(batch.device, torch.long)
    labels = torch.from_numpy(np.stack([r[1] for r in rows])).to(batch.device, torch.long)
    return inputs, labels
