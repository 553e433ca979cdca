"""Selection when sampling: draw N candidates per sample, keep the one a trained critic prefers.

- ``rerank``: the candidate with the highest critic score.
- ``sir`` (sampling-importance-resampling): a candidate drawn in proportion to exp(score / tau).
  With the critic's logit estimating log p_data / p_G, tau = 1 resamples the generator's samples
  towards the data's distribution (residual energy-based models); a large tau approaches a
  uniform choice, i.e. plain sampling.
- ``select_every=T``: the choice is made along the piece. Every T tokens, N continuations of each
  kept prefix are drawn in one batch and scored on the critic window that ends at their end; one
  is kept and the next T tokens continue it. Continuing a kept prefix re-reads its last
  2 x context tokens into a fresh decoding state (the key/value cache is not copied between
  candidates), so positions further back than that reach the new tokens only through the layers
  above, as the sliding window of decoding already limits them.

Candidates run batched: one ``generate_tokens`` call of num x N rows per piece (or per block).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

logger = logging.getLogger(__name__)

SELECTIONS = ("rerank", "sir")


def choose(scores, select: str, tau: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Index of the kept candidate in each row of ``scores`` [num, N].

    ``rerank``: the highest score (the first of equals). ``sir``: drawn with probability
    softmax(score / tau) from ``rng``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not s.shape[1]:
        raise ValueError(f"choose: scores must be [num, N] with N >= 1, got shape {s.shape}")
    if select == "rerank":
        return s.argmax(axis=1)
    if select == "sir":
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        rng = rng if rng is not None else np.random.default_rng()
        z = s / tau
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return np.array([rng.choice(s.shape[1], p=row) for row in p])
    raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")


def _block_seed(seed: int | None, block: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), 7, block]).generate_state(1, np.uint64)[0] >> 1)


def _elapsed(tokens: torch.Tensor, token_seconds: torch.Tensor) -> torch.Tensor:
    return token_seconds.to(tokens.device)[tokens].sum(1)


def generate_selected(gen, critic, num: int, length: int, candidates: int, select: str = "rerank",
                      tau: float = 1.0, select_every: int | None = None, primer: torch.Tensor | None = None,
                      seed: int | None = None, eos_id: int | None = None, context: int | None = None,
                      max_seconds: float | None = None, token_seconds: torch.Tensor | None = None,
                      progress=None, device="cpu", **sampling) -> tuple[torch.Tensor, dict]:
    """``num`` samples of ``length`` tokens (primer included), each kept out of ``candidates``.

    ``gen``: a TransformerXL; ``critic``: a ``tgan.critic.Critic`` (checked by the caller);
    ``sampling``: temperature, top_k, top_p of ``tgan.sampling.generate_tokens``.
    Returns (tokens [num, length'] with length' <= length where ``max_seconds`` stopped it, info):
    info = {"scores": each kept sample's critic score, "block_scores": per block with
    ``select_every``, "generated_tokens", "kept_tokens", "tokens_per_kept", "refed_tokens",
    "seconds", "critic_seconds"}.
    """
    from tgan.sampling import generate_tokens

    t0 = time.perf_counter()
    n = candidates
    rng = np.random.default_rng(None if seed is None else [int(seed), 11])
    p_len = 0 if primer is None else int(primer.shape[-1])
    critic_s = 0.0

    def score(rows: torch.Tensor) -> np.ndarray:
        nonlocal critic_s
        t = time.perf_counter()
        s = critic.score(rows)
        critic_s += time.perf_counter() - t
        return s

    if not select_every:
        out = generate_tokens(gen, num * n, length, primer=primer, seed=seed, eos_id=eos_id, context=context,
                              device=device, progress=progress, max_seconds=max_seconds,
                              token_seconds=token_seconds, **sampling)
        scores = score(out).reshape(num, n)
        idx = choose(scores, select, tau, rng)
        kept = out.view(num, n, -1)[torch.arange(num), torch.as_tensor(idx)]
        info = {"scores": [float(scores[i, j]) for i, j in enumerate(idx)], "candidate_scores": scores.tolist(),
                "generated_tokens": int(num * n * (out.shape[1] - p_len)), "refed_tokens": 0}
    else:
        context = gen.cfg.eval_mem_len if context is None else context
        keep = 2 * context
        if primer is None:
            prefix = torch.zeros(num, 0, dtype=torch.long, device=device)
        else:
            prefix = primer.to(device).expand(num, -1) if primer.dim() == 1 else primer.to(device)
        finished = torch.zeros(num, dtype=torch.bool, device=device)  # sampled EOS (a primer's does not count)
        block_scores, generated, refed, b = [], 0, 0, 0
        while prefix.shape[1] < length:
            t_b = min(select_every, length - prefix.shape[1])
            ctx = prefix[:, -keep:] if prefix.shape[1] else None
            rows = None if ctx is None else ctx.repeat_interleave(n, 0)
            width = 0 if ctx is None else ctx.shape[1]
            out = generate_tokens(gen, num * n, width + t_b, primer=rows, seed=_block_seed(seed, b), eos_id=eos_id,
                                  context=context, device=device, **sampling)
            new = out[:, width:]
            generated += num * n * t_b
            refed += num * n * width
            done_rows = finished.repeat_interleave(n, 0)
            if eos_id is not None:
                new = torch.where(done_rows[:, None], torch.full_like(new, eos_id), new)
            cand = torch.cat([prefix.repeat_interleave(n, 0), new], 1)
            s = score(cand[:, -critic.window:]).reshape(num, n)
            idx = torch.as_tensor(choose(s, select, tau, rng))
            idx = torch.where(finished.cpu(), torch.zeros_like(idx), idx)  # an ended sample has nothing to choose
            block_scores.append([float(s[i, j]) for i, j in enumerate(idx.tolist())])
            prefix = cand.view(num, n, -1)[torch.arange(num), idx.to(cand.device)]
            if eos_id is not None:
                finished |= (prefix[:, -t_b:] == eos_id).any(1)
            b += 1
            if progress is not None:
                progress.update(t_b)
            if max_seconds is not None and bool((_elapsed(prefix, token_seconds) >= max_seconds).all()):
                break
            if eos_id is not None and bool(finished.all()):
                fill = torch.full((num, length - prefix.shape[1]), eos_id, dtype=prefix.dtype, device=prefix.device)
                prefix = torch.cat([prefix, fill], 1)
                break
        kept = prefix
        scores = score(kept)
        info = {"scores": scores.tolist(), "block_scores": [list(r) for r in zip(*block_scores)],
                "generated_tokens": int(generated), "refed_tokens": int(refed)}
    kept_tokens = int(num * (kept.shape[1] - p_len))
    info.update(kept_tokens=kept_tokens, tokens_per_kept=info["generated_tokens"] / max(kept_tokens, 1),
                seconds=time.perf_counter() - t0, critic_seconds=critic_s)
    return kept, info
