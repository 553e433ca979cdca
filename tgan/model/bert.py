"""BERT discriminator: bidirectional encoder with learned positions, a pooler on position 0 and a
linear layer to one logit; an MLM head (tied to the word embeddings) for pre-training and PLL.

Inputs are token ids [B, T] or float one-hot / soft [B, T, V]; the latter enter as
``onehot @ word_embeddings`` so D is differentiable in its input. The gradient penalty needs the
gradient with respect to the *embedded* interpolate: use ``embed_words`` then ``score_embedded``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tgan.model.embedding import embed_ids_or_onehots
from tgan.model.config import BertConfig


class BertLayer(nn.Module):
    """Self-attention + feed-forward, each with residual and post-LayerNorm (as BERT)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_inner), nn.GELU(), nn.Linear(cfg.d_inner, cfg.d_model))
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.attn_dropout

    def forward(self, h, key_padding=None):
        B, T, d = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        # Written out rather than F.scaled_dot_product_attention: the gradient penalty
        # differentiates D twice, and the fused SDPA kernels (flash on CPU and GPU) have no
        # double backward. D's sequences are short (<= max_len), so [T, T] scores are cheap.
        scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # [B, H, T, T]
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        probs = F.dropout(torch.softmax(scores.float(), dim=-1).to(q.dtype), self.attn_dropout, self.training)
        a = probs @ v  # [B, H, T, Dh]
        h = self.norm1(h + self.drop(self.out(a.transpose(1, 2).reshape(B, T, d))))
        return self.norm2(h + self.drop(self.ff(h)))


class BertDiscriminator(nn.Module):
    """D: ``forward(x) -> [B]`` logits; ``mlm_logits(x) -> [B, T, V]``; ``features(x) -> [B, T, d]``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position = nn.Embedding(cfg.max_len, cfg.d_model)
        self.emb_norm = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.n_layer))
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 1)
        # MLM head: transform + decoder tied to the word embeddings.
        self.mlm_transform = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(),
                                           nn.LayerNorm(cfg.d_model, eps=1e-12))
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(self._init)

    def _init(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, self.cfg.init_std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def freeze(self, n_layers: int, embeddings: bool = True) -> None:
        """Freeze the embeddings (optionally) and the first ``n_layers`` encoder layers."""
        if not 0 <= n_layers <= self.cfg.n_layer:
            raise ValueError(f"freeze: n_layers must be in [0, {self.cfg.n_layer}], got {n_layers}")
        if embeddings:
            for mod in (self.word, self.position, self.emb_norm):
                mod.requires_grad_(False)
        for layer in self.layers[:n_layers]:
            layer.requires_grad_(False)

    def embed_words(self, x: torch.Tensor) -> torch.Tensor:
        """Word embeddings [B, T, d] of ids [B, T] or of float one-hots [B, T, V] (differentiable)."""
        return embed_ids_or_onehots(self.word.weight, x, "BertDiscriminator")

    def encode_embedded(self, e: torch.Tensor, key_padding=None) -> torch.Tensor:
        """Encoder output [B, T, d] from word embeddings [B, T, d]."""
        T = e.shape[1]
        if T > self.cfg.max_len:
            raise ValueError(f"BertDiscriminator: sequence length {T} exceeds max_len={self.cfg.max_len}")
        pos = self.position(torch.arange(T, device=e.device))
        h = self.drop(self.emb_norm(e + pos))
        for layer in self.layers:
            h = layer(h, key_padding)
        return h

    def score_embedded(self, e: torch.Tensor) -> torch.Tensor:
        """One logit per sequence [B] from word embeddings [B, T, d] (pooler on position 0)."""
        h = self.encode_embedded(e)
        return self.head(torch.tanh(self.pooler(h[:, 0]))).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per sequence [B] for ids [B, T] or one-hots [B, T, V]."""
        return self.score_embedded(self.embed_words(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, T, d]."""
        return self.encode_embedded(self.embed_words(x), self.padding_mask(x))

    def mlm_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Masked-LM logits [B, T, V] (decoder tied to the word embeddings)."""
        h = self.encode_embedded(self.embed_words(x), self.padding_mask(x))
        return F.linear(self.mlm_transform(h), self.word.weight, self.mlm_bias)

    def padding_mask(self, x):
        """Bool [B, L], True at PAD tokens (None when there are none, or for embedded inputs)."""
        if x.is_floating_point():
            return None
        pad = x == self.cfg.pad_id
        pad &= ~pad.all(dim=-1, keepdim=True)  # an all-PAD row attends everywhere rather than to nothing
        return pad if pad.any() else None


def load_bert_folder(folder, meta_name: str, weights_name: str) -> tuple[BertDiscriminator, dict]:
    """(BERT in eval mode on the CPU, metadata) of a folder holding ``meta_name`` (JSON whose
    ``"bert"`` entry is the BertConfig) and ``weights_name`` (safetensors): the scorer's and the
    critic's folders. Raises what json, safetensors and ``load_state_dict`` raise; the callers
    name the folder in their own error."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / meta_name).read_text(encoding="utf-8"))
    bert = BertDiscriminator(BertConfig.from_dict(meta["bert"]))
    bert.load_state_dict(load_file(str(folder / weights_name)))
    return bert.eval(), meta
