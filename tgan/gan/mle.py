"""Maximum-likelihood training of the generator over long sequences, segment by segment, and the
validation NLL (nats per token) with the evaluation memory length."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tgan.gan.data_feed import START_SHARE


def token_nll(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed NLL (nats) over non-PAD targets and their count. logits [B, T, V], targets [B, T]."""
    mask = targets != pad_id
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    return (nll * mask.reshape(-1)).sum(), int(mask.sum())


class PieceStream:
    """Feeds the generator one ``tgt_len`` segment per batch row at a time from a stream of whole
    pieces joined by EOS (never PAD), carrying the memory across segments and pieces.

    Every ``crop_segments`` steps each row jumps to a random position of a random piece and the
    memory restarts; in between the memory fills up to ``mem_len`` (after ``mem_len / tgt_len``
    steps) and stays full, as in validation and generation. The restarts keep the model able to
    begin with no memory, as a validation chunk or a generated piece begins (training without
    them, the first segment of a validation chunk scored 0.25 nats/token worse at the tiny
    preset), and keep the rows drawing fresh pieces. ``crop_segments=0`` never restarts: whole
    pieces stream through each row as the released code's iterator does. A piece boundary shows
    as EOS ("start of a piece").

    ``draw_piece(rng) -> int64 array`` supplies pieces; the stream owns its generator ``rng``
    (seeded by ``seed``), so the MLE data does not depend on what else the run draws (rollouts,
    discriminator crops), and its state is saved with checkpoints (``state_dict``). ``reset()``
    starts a new crop (done at every checkpoint too, so a resumed run matches).
    """

    def __init__(self, draw_piece, batch_size: int, tgt_len: int, device, seed=0, eos_id: int = 1,
                 crop_segments: int = 0):
        if batch_size < 1 or tgt_len < 1 or crop_segments < 0:
            raise ValueError(f"PieceStream: batch_size and tgt_len must be >= 1, crop_segments >= 0, got "
                             f"{batch_size}, {tgt_len}, {crop_segments}")
        self.draw_piece, self.B, self.T, self.device = draw_piece, batch_size, tgt_len, device
        self.eos, self.crop_segments = eos_id, crop_segments
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self):
        """Empty the rows and the memory: the next segment starts a new crop."""
        self.rows = [np.zeros(0, dtype=np.int64) for _ in range(self.B)]
        self.mems = None
        self.steps = 0

    def state_dict(self) -> dict:
        """The generator state (rows and memory restart at checkpoints)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        self.rng.bit_generator.state = state["rng"]
        self.reset()

    def _refill(self, b: int, need: int):
        parts = [self.rows[b]]
        have = len(self.rows[b])
        first = have == 0 and self.mems is None
        while have < need:
            piece = self.draw_piece(self.rng)
            if first and self.rng.random() < START_SHARE:
                # a share of fresh rows begins a piece behind EOS, with no memory: exactly how
                # unconditional generation starts ("EOS = start of a piece"); without them the
                # model, asked to begin a piece, answered EOS again and again (empty samples)
                parts.append(np.array([self.eos], dtype=np.int64))
                have += 1
                first = False
            elif first:  # the other fresh rows start inside a piece
                piece = piece[int(self.rng.integers(max(len(piece) - need, 0) + 1)):]
                first = False
            else:
                parts.append(np.array([self.eos], dtype=np.int64))
                have += 1
            parts.append(piece)
            have += len(piece)
        self.rows[b] = np.concatenate(parts)

    def next(self) -> tuple[torch.Tensor, torch.Tensor, list | None]:
        """(inputs [B, T], targets [B, T], mems) for the next segment."""
        if self.crop_segments and self.steps == self.crop_segments:
            self.reset()
        self.steps += 1
        seg = []
        for b in range(self.B):
            if len(self.rows[b]) < self.T + 1:
                self._refill(b, self.T + 1)
            seg.append(self.rows[b][: self.T + 1])
            self.rows[b] = self.rows[b][self.T:]
        x = torch.from_numpy(np.stack(seg)).to(self.device)
        mems = self.mems
        return x[:, :-1], x[:, 1:], mems


def mle_step(model, stream: PieceStream, pad_id: int) -> tuple[torch.Tensor, int]:
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
        if progress is not None:
            progress.update(len(batch))  # the last, smaller batch: the bar ends at its total
    model.train(was)
    if count == 0:
        raise ValueError("evaluate_nll: the validation chunks hold no tokens")
    return total / count


def uniform_nll(vocab_size: int) -> float:
    """NLL of the uniform distribution, ln(V): the baseline a trained model must beat."""
    return math.log(vocab_size)
