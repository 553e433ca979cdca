"""Learning-rate and Gumbel inverse-temperature schedules."""
from __future__ import annotations

import math

import torch


def inverse_sqrt(warmup: int):
    """LR multiplier: linear warm-up to 1 over ``warmup`` steps, then sqrt(warmup / step)."""
    if warmup < 0:
        raise ValueError(f"inverse_sqrt: warmup must be >= 0, got {warmup}")

    def f(step: int) -> float:
        s = step + 1
        if warmup == 0:
            return 1.0
        return s / warmup if s < warmup else math.sqrt(warmup / s)

    return f


def inverse_sqrt_scheduler(opt: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with the inverse-sqrt schedule (its state_dict is JSON-serialisable)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt(warmup))


def gumbel_beta(step: int, max_steps: int, beta_max: float) -> float:
    """Inverse temperature beta_n = beta_max ** (n / N): 1 at the start, beta_max at step N."""
    if beta_max < 1.0:
        raise ValueError(f"gumbel_beta: beta_max must be >= 1, got {beta_max}")
    if max_steps <= 0:
        raise ValueError(f"gumbel_beta: max_steps must be > 0, got {max_steps}")
    return float(beta_max ** (min(step, max_steps) / max_steps))


def apply_step(loss: torch.Tensor, module: torch.nn.Module, opt: torch.optim.Optimizer, sched,
               clip: float = 1.0) -> None:
    """One optimizer step on ``loss``: zero the gradients, back-propagate, clip ``module``'s
    gradient norm to ``clip``, step the optimizer and the scheduler."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    opt.step()
    sched.step()


def restore_step(ck, module: torch.nn.Module, opt: torch.optim.Optimizer, sched, name: str = "bert") -> tuple:
    """Load a one-model training checkpoint (``ck.models[name]``, optimizer "opt", scheduler "lr")
    into ``module``, ``opt`` and ``sched``; returns (step, history, seconds) from its extras."""
    module.load_state_dict(ck.models[name])
    opt.load_state_dict(ck.optimizers["opt"])
    sched.load_state_dict(ck.meta["schedulers"]["lr"])
    return ck.step, ck.extra["history"], ck.extra["seconds"]
