"""Model configurations: dataclasses with a comment on every field and presets by name.

The whole config is saved in every checkpoint (``asdict``) and rebuilt with ``from_dict``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class _ConfigMixin:
    """Round-trips through plain dicts (JSON in checkpoints) and rejects unknown keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class GeneratorConfig(_ConfigMixin):
    """Transformer-XL generator (paper defaults in the ``paper`` preset)."""

    vocab_size: int = 310  # tokens incl. PAD/EOS/MASK; set from the data's vocabulary
    n_layer: int = 6  # transformer layers
    d_model: int = 500  # hidden size (also the embedding size: embeddings are tied)
    n_head: int = 10  # attention heads
    d_head: int = 50  # size of one head
    d_inner: int = 1000  # feed-forward inner size
    dropout: float = 0.1  # residual / feed-forward / embedding dropout
    attn_dropout: float = 0.1  # dropout on attention probabilities
    tgt_len: int = 128  # segment length in training
    mem_len: int = 1024  # memory length in training
    eval_mem_len: int = 2048  # memory length for validation NLL and generation
    init_std: float = 0.01  # N(0, init_std) initialisation
    pad_id: int = 0  # padding token, ignored by the loss

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "d_model", "n_head", "d_head", "d_inner", "tgt_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GeneratorConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("mem_len", "eval_mem_len"):
            if getattr(self, name) < 0:
                raise ValueError(f"GeneratorConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"GeneratorConfig.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class BertConfig(_ConfigMixin):
    """BERT discriminator (bidirectional encoder, learned positions, one logit from position 0)."""

    vocab_size: int = 310  # set from the data's vocabulary (the MASK id is part of it)
    n_layer: int = 5  # encoder layers
    d_model: int = 768  # hidden size
    n_head: int = 12  # attention heads
    d_inner: int = 3072  # feed-forward inner size
    max_len: int = 512  # learned positions: the longest sequence D scores
    dropout: float = 0.1  # hidden dropout
    attn_dropout: float = 0.1  # attention-probability dropout
    init_std: float = 0.02  # N(0, init_std) initialisation, as BERT
    pad_id: int = 0  # padding token

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "d_model", "n_head", "d_inner", "max_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BertConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"BertConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")


@dataclass
class CNNConfig(_ConfigMixin):
    """RelGAN-style CNN discriminator, the baseline."""

    vocab_size: int = 310  # set from the data's vocabulary
    d_embed: int = 64  # token embedding size
    widths: tuple = (2, 3, 4, 5)  # convolution filter widths
    n_filters: int = 300  # filters per width
    dropout: float = 0.25  # dropout before the output layer
    init_std: float = 0.02  # N(0, init_std) initialisation

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or min(self.widths) <= 0:
            raise ValueError(f"CNNConfig.widths must be positive integers, got {self.widths}")


@dataclass
class ModelPreset:
    """A named pair of generator and discriminator configs."""

    generator: GeneratorConfig
    bert: BertConfig
    cnn: CNNConfig = field(default_factory=CNNConfig)


def _presets() -> dict[str, ModelPreset]:
    return {
        # Runs every stage on 2 CPU cores in minutes.
        "tiny": ModelPreset(
            GeneratorConfig(n_layer=2, d_model=128, n_head=4, d_head=32, d_inner=256, tgt_len=64,
                            mem_len=64, eval_mem_len=128, dropout=0.1, attn_dropout=0.0),
            BertConfig(n_layer=2, d_model=128, n_head=4, d_inner=256, max_len=256),
            CNNConfig(d_embed=32, n_filters=64),
        ),
        # One GPU, fast iterations.
        "small": ModelPreset(
            GeneratorConfig(n_layer=4, d_model=256, n_head=4, d_head=64, d_inner=1024, tgt_len=128,
                            mem_len=512, eval_mem_len=1024),
            BertConfig(n_layer=4, d_model=256, n_head=4, d_inner=1024, max_len=512),
        ),
        # The paper's sizes (its experiments and the released code).
        "paper": ModelPreset(
            GeneratorConfig(),
            BertConfig(),
        ),
    }


PRESETS = tuple(_presets())


def preset(name: str, vocab_size: int | None = None, pad_id: int | None = None) -> ModelPreset:
    """The preset ``name`` (``tiny``, ``small`` or ``paper``), optionally sized for a vocabulary."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
    p = presets[name]
    if vocab_size is not None:
        p.generator.vocab_size = p.bert.vocab_size = p.cnn.vocab_size = vocab_size
    if pad_id is not None:
        p.generator.pad_id = p.bert.pad_id = pad_id
    return p
