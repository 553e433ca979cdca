"""Straight-through rollouts with truncated back-propagation (TBPTT, k1 = k2 = segment_len).

A rollout continues a real priming prefix: the prefix (all but its last token) runs through G
without gradient to build the memory, then G samples ``rollout_len`` tokens one by one, feeding
each straight-through one-hot back in. The rollout is cut into segments of ``segment_len``: each
segment is scored by D against the aligned real segment and back-propagated at once, its graph is
freed, and the memory carries over detached. Peak memory therefore depends on ``segment_len``, not
on ``rollout_len``. PAD is never sampled (a padded-looking fake would be a tell for D).
"""
from __future__ import annotations

import torch

from tgan.gan.losses import gradient_penalty
from tgan.sampling import never_sample
from tgan.ops import gumbel_softmax_st
from tgan.ops.philox import seed_stream


def disc_inputs(real: torch.Tensor, fake_seg: torch.Tensor, s: int, prefix_len: int, segment_len: int,
                with_prefix: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """What D scores for segment ``s``: (real ids [B, T], fake one-hots [B, T, V]).

    With ``with_prefix`` the first segment is preceded on both sides by the shared real prefix
    (as one-hots on the fake side), as the released code feeds D: D then judges the continuation
    of the same opening. Later segments, and every segment without it, are the aligned segments.
    """
    start = prefix_len + s * segment_len
    real_seg = real[:, start: start + fake_seg.shape[1]]
    if not (with_prefix and s == 0):
        return real_seg, fake_seg
    pre = torch.nn.functional.one_hot(real[:, :prefix_len].long(), fake_seg.shape[-1]).to(fake_seg.dtype)
    return real[:, : start + fake_seg.shape[1]], torch.cat([pre, fake_seg], dim=1)


def _check(real: torch.Tensor, prefix_len: int, rollout_len: int, segment_len: int):
    if prefix_len < 1:
        raise ValueError(f"rollout: prefix_len must be >= 1, got {prefix_len}")
    if segment_len < 1 or rollout_len < segment_len or rollout_len % segment_len:
        raise ValueError(
            f"rollout: rollout_len ({rollout_len}) must be a positive multiple of segment_len ({segment_len})"
        )
    if real.shape[1] < prefix_len + rollout_len:
        raise ValueError(f"rollout: real batch has {real.shape[1]} tokens, needs prefix_len + rollout_len = "
                         f"{prefix_len + rollout_len}")


def rollout_segments(gen, real: torch.Tensor, prefix_len: int, rollout_len: int, segment_len: int,
                     beta: float, mem_len: int | None = None, grad: bool = True, cache: str | None = None,
                     grad_segments: int = 1):
    """Yield (segment index, fake [B, S, V] straight-through one-hots, real segment [B, S]).

    With ``grad=True`` each yielded fake carries the graph of its own segment; the caller must
    back-propagate (or drop) it before asking for the next one, which starts from detached memory.
    ``grad_segments`` > 1 keeps the memory's (and the next input token's) graph across that many
    segments: the caller back-propagates the summed losses of each group of ``grad_segments``
    segments (and of the last, shorter group) after its last segment; peak memory then grows with
    ``grad_segments · segment_len``, still not with ``rollout_len``.
    ``cache``: the key/value cache implementation (``tgan.ops.kv_cache``; None = "auto"). One cache
    of capacity mem_len + segment_len serves every group: its buffers are reused in place once
    the previous group's graph is back-propagated.
    """
    if grad_segments < 1:
        raise ValueError(f"rollout: grad_segments must be >= 1, got {grad_segments}")
    impl = cache
    _check(real, prefix_len, rollout_len, segment_len)
    mem_len = gen.cfg.mem_len if mem_len is None else mem_len
    with torch.no_grad():
        mems = None
        if prefix_len > 1:
            _, mems = gen(real[:, : prefix_len - 1], mem_len=mem_len)
    x = real[:, prefix_len - 1]  # last prefix token: fed with gradient so every sample has one
    with torch.set_grad_enabled(grad):
        for s in range(rollout_len // segment_len):
            state = gen.init_state(mems, batch_size=real.shape[0], cache=cache,  # memory K/V, grad to projections
                                   capacity=mem_len + segment_len)
            fakes = []
            # one draw per segment, on the device, seeds its dropout and Gumbel noise: the kernels
            # read it there (no host draw, nothing a captured segment would freeze)
            with seed_stream(device=x.device):
                for _ in range(segment_len):
                    logits = never_sample(gen.step(x, state, max_context=mem_len + segment_len), gen.cfg.pad_id)
                    y, _ = gumbel_softmax_st(logits, beta)
                    fakes.append(y)
                    x = y
            fake = torch.stack(fakes, dim=1)  # [B, S, V]
            start = prefix_len + s * segment_len
            yield s, fake, real[:, start: start + segment_len]
            if not grad or (s + 1) % grad_segments == 0:  # a group ends: cut the graph
                mems = gen.state_mems(state, mem_len=mem_len, detach=True)
                x = x.detach()
                cache = state.cache  # reused by the next segment
            else:  # the next segment's graph reaches this one: its keys/values must stay intact
                mems = gen.state_mems(state, mem_len=mem_len, detach=False)
                cache = impl
            del state, fakes


def generator_adversarial_step(gen, disc, loss, real, prefix_len, rollout_len, segment_len, beta,
                               weight: float = 1.0, mem_len=None, cache: str | None = None,
                               disc_prefix: bool = False, grad_segments: int = 1) -> float:
    """Accumulate the generator's adversarial gradient over one rollout, segment by segment.

    Each segment contributes ``weight · L_gen / n_segments``, back-propagated at once, or with
    ``grad_segments`` > 1 once per group of that many segments, the gradient then flowing through
    the memory between the group's segments (``rollout_segments``).
    ``disc_prefix``: D sees the shared prefix before the first segment (``disc_inputs``).
    Returns the mean adversarial loss over segments. The caller zeroes and steps the optimizer.
    """
    n = rollout_len // segment_len
    total = torch.zeros((), device=real.device)  # summed on the device: one host sync per step
    pending = None
    for s, fake, _ in rollout_segments(gen, real, prefix_len, rollout_len, segment_len, beta, mem_len,
                                       cache=cache, grad_segments=grad_segments):
        real_seg, fake = disc_inputs(real, fake, s, prefix_len, segment_len, disc_prefix)
        d_f = disc(fake)
        with torch.no_grad():
            d_r = disc(real_seg)
        lg = loss.gen_loss(d_r, d_f, fake=fake)
        pending = weight * lg / n if pending is None else pending + weight * lg / n
        if (s + 1) % grad_segments == 0 or s == n - 1:
            pending.backward()
            pending = None
        total += lg.detach()
    return total.item() / n


@torch.no_grad()
def sample_fakes(gen, real, prefix_len, rollout_len, segment_len, beta, mem_len=None, cache=None) -> torch.Tensor:
    """A rollout without gradient: fake one-hots [B, rollout_len, V] (for the D step)."""
    parts = [f for _, f, _ in rollout_segments(gen, real, prefix_len, rollout_len, segment_len, beta, mem_len,
                                               grad=False, cache=cache)]
    return torch.cat(parts, dim=1)


def discriminator_step(disc, loss, real, fake, segment_len, gp_weight: float, prefix_len: int,
                       disc_prefix: bool = False) -> tuple[float, float, float]:
    """Accumulate D's gradient over the rollout's segments. Returns (loss, mean D_r, mean D_f).
    ``disc_prefix``: D sees the shared prefix before the first segment (``disc_inputs``)."""
    n = fake.shape[1] // segment_len
    sums = torch.zeros(3, device=fake.device)  # loss, D_r, D_f summed on the device: one host sync
    for s in range(n):
        r, f = disc_inputs(real, fake[:, s * segment_len: (s + 1) * segment_len], s, prefix_len, segment_len,
                           disc_prefix)
        d_r, d_f = disc(r), disc(f)
        gp = gradient_penalty_or_zero(disc, loss, r, f, gp_weight)
        ld = loss.disc_loss(d_r, d_f, gp)
        (ld / n).backward()
        sums += torch.stack([ld.detach(), d_r.detach().mean(), d_f.detach().mean()])
    tot, dr, df = (sums / n).tolist()
    return tot, dr, df


def gradient_penalty_or_zero(disc, loss, real_ids, fake, weight):
    """The loss's gradient penalty, or 0 for losses without one."""
    if not getattr(loss, "uses_gp", False) or weight == 0:
        return torch.zeros((), device=fake.device)
    return gradient_penalty(disc, real_ids, fake, weight)

