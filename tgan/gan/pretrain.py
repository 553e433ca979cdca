"""Discriminator pre-training: masked-LM on real data (span masking by default)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tgan.model.masking import IGNORE, mask_batch


def mlm_step(disc, batch: torch.Tensor, mode: str, mask_id: int, vocab_range: tuple[int, int],
             rng: np.random.Generator, special=()) -> tuple[torch.Tensor, float]:
    """Masked-LM loss (mean over masked positions) of a real batch [B, T]; returns (loss, accuracy)."""
    inputs, labels = mask_batch(batch, mode, mask_id, vocab_range, rng, special=special)
    logits = disc.mlm_logits(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)
    with torch.no_grad():
        m = labels != IGNORE
        acc = float((logits.argmax(-1)[m] == labels[m]).float().mean()) if m.any() else 0.0
    return loss, acc
