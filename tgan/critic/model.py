"""A trained critic: a BERT classifier of real against one generator's samples, and how it scores.

Trained by noise-contrastive estimation (``tgan.critic.train``), with real windows and generated
windows in equal numbers, its logit on a window estimates log p_data(window) / p_G(window). A
piece's score is the mean logit over its windows: the average log density ratio per window, which
does not grow with the piece's length.

A finished critic is a folder holding ``critic.safetensors`` (the BERT's weights) and
``critic.json`` (its BertConfig, the window length, the vocabulary, the generator it was trained
against with that generator's fingerprint, the data set, the sampling settings of its fakes, and
its held-out AUC). A critic only means something for the generator it was trained against:
``Critic.check`` compares fingerprints (a hash of the generator's weights) and refuses another.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from tgan.model import BertDiscriminator
from tgan.model.bert import load_bert_folder

CRITIC_WEIGHTS = "critic.safetensors"
CRITIC_META = "critic.json"


class CriticError(ValueError):
    """A critic that is missing, unfinished, corrupt, or trained against another generator."""


def generator_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a generator's weights (names, shapes, dtypes and values): the identity a critic
    records. The same weights give the same fingerprint whether they come from a run checkpoint,
    a model folder or an in-memory model, on any device."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def state_fingerprint(state: dict) -> str:
    """``generator_fingerprint`` of a state_dict (as read from a checkpoint or safetensors)."""
    holder = torch.nn.Module()
    holder.state_dict = lambda: state  # the same hashing over the same (name, tensor) pairs
    return generator_fingerprint(holder)


def piece_windows(tokens, window: int, eos_id: int) -> list[np.ndarray]:
    """The windows a piece is scored on: its tokens up to and including its first EOS, cut into
    ``window``-token windows from the start, the last one ending at the piece's end (overlapping
    the one before it where the length is not a multiple). A piece shorter than ``window`` is one
    shorter window."""
    t = np.asarray(tokens, dtype=np.int64).ravel()
    ends = np.flatnonzero(t == eos_id)
    if len(ends):
        t = t[: ends[0] + 1]
    if len(t) <= window:
        return [t]
    out = [t[i: i + window] for i in range(0, len(t) - window + 1, window)]
    if len(t) % window:
        out.append(t[-window:])
    return out


def critic_logits(bert: BertDiscriminator, x: torch.Tensor) -> torch.Tensor:
    """One logit per row of ids ``x`` [B, T], PAD (right padding of short windows) masked out of
    attention; the pooler reads position 0, which is never PAD."""
    e = bert.embed_words(x)
    h = bert.encode_embedded(e, bert.padding_mask(x))
    return bert.head(torch.tanh(bert.pooler(h[:, 0]))).squeeze(-1)


def pad_rows(rows: list[np.ndarray], length: int, pad_id: int) -> torch.Tensor:
    """[len(rows), length] ids, each row right-padded with PAD."""
    out = np.full((len(rows), length), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


class Critic:
    """A critic trained against one generator (see the module docstring).

    ``score(tokens)`` gives each piece's mean window logit (higher = judged more real).
    ``score_windows(ids)`` is the logit of each window [N, T]; a subclass may replace it (the
    selection code only calls ``score``, which calls ``score_windows``).
    """

    def __init__(self, bert: BertDiscriminator, meta: dict, source=None):
        self.bert, self.meta = bert.eval(), dict(meta)
        self.source = None if source is None else Path(source)
        self.window = int(meta["window"])
        self.eos_id, self.pad_id = int(meta["eos_id"]), int(meta["pad_id"])

    def __repr__(self) -> str:
        auc = (self.meta.get("auc") or {}).get("held_out")
        return (f"tgan.Critic({self.source or 'in memory'}, window {self.window}, trained against "
                f"{self.generator_source}, held-out AUC {auc if auc is None else round(auc, 3)})")

    @property
    def generator_fingerprint(self) -> str:
        return self.meta["generator"]["fingerprint"]

    @property
    def generator_source(self) -> str:
        return self.meta["generator"].get("source", "?")

    @property
    def device(self) -> torch.device:
        return next(self.bert.parameters()).device

    def to(self, device) -> "Critic":
        self.bert.to(device)
        return self

    def check(self, generator_or_fingerprint) -> None:
        """Raise CriticError unless this critic was trained against this generator (a
        ``tgan.Generator``, a model, or a fingerprint string)."""
        g = generator_or_fingerprint
        if isinstance(g, str):
            fp, where = g, "the generator given"
        else:
            fp = getattr(g, "fingerprint", None) or generator_fingerprint(getattr(g, "model", g))
            where = f"the generator {getattr(g, 'source', None) or 'given'}"
        if fp != self.generator_fingerprint:
            raise CriticError(
                f"critic {self.source or '(in memory)'} was trained against the generator "
                f"{self.generator_source} (fingerprint {self.generator_fingerprint}), not against "
                f"{where} (fingerprint {fp}): its score estimates log p_data / p_G for that "
                "generator's samples only; train one for this generator with python -m tgan.critic "
                "--generator ...")

    @torch.no_grad()
    def score_windows(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits [N] of windows ``ids`` [N, T] (right-padded with PAD)."""
        return critic_logits(self.bert, ids.to(self.device)).float().cpu()

    @torch.no_grad()
    def score(self, tokens, batch_size: int = 64) -> np.ndarray:
        """Each piece's score: the mean critic logit over its windows (``piece_windows``).
        ``tokens``: [B, T] ids (tensor or array) or a list of 1-D id sequences. Returns [B]."""
        rows = [np.asarray(r.cpu() if torch.is_tensor(r) else r) for r in tokens]
        wins, owner = [], []
        for i, r in enumerate(rows):
            w = piece_windows(r, self.window, self.eos_id)
            wins += w
            owner += [i] * len(w)
        logits = np.empty(len(wins), dtype=np.float64)
        order = sorted(range(len(wins)), key=lambda j: len(wins[j]))  # batch windows of like length
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            batch = pad_rows([wins[j] for j in idx], max(len(wins[j]) for j in idx), self.pad_id)
            logits[idx] = self.score_windows(batch).numpy()
        owner = np.asarray(owner)
        return np.array([logits[owner == i].mean() for i in range(len(rows))])

    def save(self, folder) -> Path:
        """Write ``critic.safetensors`` and ``critic.json`` (last: it marks the folder finished)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.bert.state_dict().items()},
                  str(folder / CRITIC_WEIGHTS), metadata={"format": "pt"})
        meta = {**self.meta, "bert": self.bert.cfg.to_dict()}  # what load_critic rebuilds the BERT from
        (folder / CRITIC_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder


def is_critic(path) -> bool:
    """Whether ``path`` is a finished critic folder (or a model folder holding one)."""
    return (Path(path) / CRITIC_META).is_file()


def load_critic(path, device="cpu") -> Critic:
    """The critic of a finished critic folder (``python -m tgan.critic --out``) or of a model
    folder exported ``--with-critic``. Raises CriticError naming the path otherwise."""
    p = Path(path)
    if not p.is_dir():
        raise CriticError(f"critic {p} does not exist (train one with python -m tgan.critic "
                          f"--generator RUN --out {p})")
    if not is_critic(p):
        unfinished = (p / "checkpoints").is_dir()
        raise CriticError(f"{p} holds no critic ({CRITIC_META} is missing"
                          + ("; its training has not finished: continue it with python -m tgan.critic "
                             "--resume)" if unfinished else ")"))
    try:
        bert, meta = load_bert_folder(p, CRITIC_META, CRITIC_WEIGHTS)
    except Exception as e:  # json, safetensors and load_state_dict raise their own types
        raise CriticError(f"critic {p} does not load ({type(e).__name__}: {e})") from None
    return Critic(bert.to(device), meta, p)


def as_critic(critic, device=None) -> Critic:
    """A ``Critic`` from a critic object or a folder path."""
    if isinstance(critic, Critic):
        return critic if device is None else critic.to(device)
    if isinstance(critic, (str, Path)):
        return load_critic(critic, device or "cpu")
    raise TypeError(f"critic must be a tgan.Critic or a critic folder, got {type(critic).__name__}")
