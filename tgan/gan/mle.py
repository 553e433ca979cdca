"""Maximum-likelihood training of the generator over long sequences, segment by segment, and the
validation NLL (nats per token) with the evaluation memory length."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def token_nll(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed NLL (nats) over non-PAD targets and their count. logits [B, T, V], targets [B, T]."""
    mask = targets != pad_id
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    return (nll * mask.reshape(-1)).sum(), int(mask.sum())


class SegmentStream:
    """Feeds a batch of long crops to the generator one ``tgt_len`` segment at a time, carrying the
    memory between segments (Transformer-XL training); a new crop is drawn when one is used up.

    ``sample(batch_size, length) -> LongTensor [B, length]`` supplies crops.
    """

    def __init__(self, sample, batch_size: int, tgt_len: int, segments: int, device):
        if segments < 1:
            raise ValueError(f"SegmentStream: segments must be >= 1, got {segments}")
        self.sample, self.B, self.T, self.n = sample, batch_size, tgt_len, segments
        self.device = device
        self.crop = None
        self.pos = 0
        self.mems = None

    def state_dict(self) -> dict:
        # A resumed run restarts its crops: the step, RNG and weights are what determinism needs,
        # and the crop is drawn from the restored RNG.
        return {}

    def next(self) -> tuple[torch.Tensor, torch.Tensor, list | None]:
        """(inputs [B, T], targets [B, T], mems) for the next segment."""
        if self.crop is None or self.pos + self.T + 1 > self.crop.shape[1]:
            self.crop = self.sample(self.B, self.n * self.T + 1).to(self.device)
            self.pos, self.mems = 0, None
        seg = self.crop[:, self.pos: self.pos + self.T + 1]
        self.pos += self.T
        return seg[:, :-1], seg[:, 1:], self.mems


def mle_step(model, stream: SegmentStream, pad_id: int) -> tuple[torch.Tensor, int]:
    """Forward one segment, return the mean NLL (with graph) and the token count; the stream keeps
    the detached memory for the next segment."""
    x, y, mems = stream.next()
    logits, stream.mems = model(x, mems=mems)
    total, n = token_nll(logits, y, pad_id)
    return total / max(n, 1), n


@torch.no_grad()
def evaluate_nll(model, chunks, tgt_len: int, mem_len: int, batch_size: int = 8, device="cpu",
                 progress=None) -> float:
    """Validation NLL in nats per token.

    ``chunks`` is an iterable of LongTensor [L] (non-overlapping pieces of the validation split);
    each chunk is scored left to right in ``tgt_len`` segments carrying ``mem_len`` of memory, so
    the number equals the chunk's exact log-likelihood under the model with that memory.
    """
    was = model.training
    model.eval()
    total, count = 0.0, 0
    batch = []

    def run(rows):
        nonlocal total, count
        x = torch.stack(rows).to(device)
        mems = None
        for s in range(0, x.shape[1] - 1, tgt_len):
            inp, tgt = x[:, s: s + tgt_len], x[:, s + 1: s + tgt_len + 1]
            inp = inp[:, : tgt.shape[1]]
            logits, mems = model(inp, mems=mems, mem_len=mem_len)
            t, n = token_nll(logits, tgt, model.cfg.pad_id)
            total += float(t)
            count += n

    for c in chunks:
        batch.append(torch.as_tensor(c, dtype=torch.long))
        if len(batch) == batch_size:
            run(batch)
            batch = []
            if progress is not None:
                progress.update(batch_size)
    if batch:
        L = max(len(b) for b in batch)
        run([F.pad(b, (0, L - len(b)), value=model.cfg.pad_id) for b in batch])
    model.train(was)
    if count == 0:
        raise ValueError("evaluate_nll: the validation chunks hold no tokens")
    return total / count


def uniform_nll(vocab_size: int) -> float:
    """NLL of the uniform distribution, ln(V): the baseline a trained model must beat."""
    return math.log(vocab_size)
