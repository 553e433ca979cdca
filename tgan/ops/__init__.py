"""Public ops: one folder per op, the same four files in each.

    tgan/ops/<op>/__init__.py   argument checks, dispatch, the public function (shapes documented)
    tgan/ops/<op>/triton.py     launchers and the autograd Function of the Triton path
    tgan/ops/<op>/kernel.py     the @triton.jit kernels
    tgan/ops/<op>/naive.py      the plain-PyTorch reference, same signature as the public function

Ops: ``rel_attention`` (Transformer-XL attention), ``gumbel_softmax`` (straight-through sampling,
top-k / top-p sampling, the noise), ``kv_cache`` (no Triton: its fast path is the C++ extension in
csrc/), ``philox`` (the random bits of every kernel). ``_backend.use_triton`` chooses the path
(``TGAN_BACKEND``); ``watch_triton_compiles`` / ``triton_compiles`` count the Triton compiles.
Tests and benchmarks carry the op's name: tests/ops/test_<op>.py,
benchmarks/bench_<op>.py. The model layer calls only the functions exported here; import a
layer of an op as a module, e.g. ``from tgan.ops.rel_attention import naive``.
"""
from tgan.ops._backend import backend_name, triton_compiles, use_triton, watch_triton_compiles
from tgan.ops.gumbel_softmax import gumbel_noise, gumbel_softmax_st, sample_logits
from tgan.ops.kv_cache import KVCache
from tgan.ops.rel_attention import rel_attention

__all__ = ["backend_name", "use_triton", "rel_attention", "gumbel_noise", "gumbel_softmax_st", "sample_logits",
           "KVCache", "triton_compiles", "watch_triton_compiles"]
