"""Model-based scores of Table 1: PLL under the BERT masked-LM, and the pieces of CA (frozen BERT
features of blocks and the linear probe; the held-out-by-piece protocol is ``tgan.metrics.ca``).

These are the only metrics that touch a model; they take the model as an argument and import
nothing from ``tgan.model``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def pseudo_log_likelihood(bert, blocks: torch.Tensor, mask_id: int, batch_size: int = 64,
                          device="cpu", progress=None) -> float:
    """Mean pseudo-log-likelihood per token (nats, <= 0) of ``blocks`` [N, T] under ``bert``'s MLM.

    Each position i of each block is masked in turn and scored as log p(x_i | x_{\\i}); the T masked
    copies of a block are batched ``batch_size`` at a time. The paper uses 2048-token pieces in
    512-token blocks: split pieces into blocks before calling.
    """
    if blocks.dim() != 2 or blocks.numel() == 0:
        raise ValueError(f"pseudo_log_likelihood: blocks must be a non-empty [N, T] tensor, got {tuple(blocks.shape)}")
    was = bert.training
    bert.eval()
    total, count = 0.0, 0
    N, T = blocks.shape
    eye = torch.eye(T, dtype=torch.bool, device=device)
    for blk in blocks.to(device):
        for s in range(0, T, batch_size):
            rows = torch.arange(s, min(T, s + batch_size), device=device)
            x = blk.expand(len(rows), T).clone()
            x[eye[rows]] = mask_id
            logp = F.log_softmax(bert.mlm_logits(x).float(), dim=-1)  # [n, T, V]
            total += float(logp[torch.arange(len(rows)), rows, blk[rows]].sum())
            count += len(rows)
        if progress is not None:
            progress.update(1)
    bert.train(was)
    return total / count


@torch.no_grad()
def block_features(bert, blocks: torch.Tensor, batch_size: int = 32, device="cpu") -> torch.Tensor:
    """Frozen features [N, V] of blocks [N, T]: the per-block max over positions of the MLM logits
    (the released code's feature for its real/fake SVM)."""
    was = bert.training
    bert.eval()
    out = [bert.mlm_logits(blocks[i: i + batch_size].to(device)).float().amax(dim=1).cpu()
           for i in range(0, len(blocks), batch_size)]
    bert.train(was)
    return torch.cat(out)


def fit_linear(x: torch.Tensor, y: torch.Tensor, steps: int = 500, weight_decay: float = 1e-3):
    """Fit an L2-regularised logistic regression on standardised features ``x`` [N, F] with
    labels ``y`` [N] (1 = real); returns ``predict(x) -> logits [M]`` (> 0 = real)."""
    x, y = x.float(), y.float()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1])
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda q: ((q.float() - mu) / sd) @ w + b


def split_blocks(tokens: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping blocks of ``length`` tokens (the tail shorter than ``length`` is dropped)."""
    n = len(tokens) // length
    return [np.asarray(tokens[i * length: (i + 1) * length]) for i in range(n)]
