"""Public ops. Each op has a Triton kernel (``tgan.kernels``), a reference in ``naive.py`` with the
same signature, and the dispatch between them in ``_backend.use_triton``.

The model layer calls only the functions exported here.
"""
from tgan.ops._backend import backend_name, use_triton
from tgan.ops.gumbel_softmax import gumbel_noise, gumbel_softmax_st, sample_logits
from tgan.ops.kv_cache import KVCache
from tgan.ops.rel_attention import rel_attention

__all__ = ["backend_name", "use_triton", "rel_attention", "gumbel_noise", "gumbel_softmax_st", "sample_logits",
           "KVCache"]
