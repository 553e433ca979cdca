"""Straight-through Gumbel-softmax sampling and top-k / top-p sampling."""
from tgan.ops.gumbel_softmax.triton import gumbel_noise, gumbel_softmax_st, sample_logits

__all__ = ["gumbel_noise", "gumbel_softmax_st", "sample_logits"]
