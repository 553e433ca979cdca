"""KVCache benchmarks: the C++ cache vs the pure-PyTorch one vs the naive torch.cat cache.

Providers (``KVCache(impl=...)``): cpp (tgan._C), torch (same algorithm in Python), cat (the
cache before KVCache: torch.cat at every step).

  test_append        the cache alone: S = 256 differentiable appends of one position per layer
                     (2 layers, H 2, D 32), then the backward of a loss on every returned view:
                     the host cost of an append and of its backward node. Per append in extra_info.
  test_decode_step   a differentiable decode segment of a small Transformer-XL (step by step,
                     straight-through one-hots, M = 256 memory positions, then one backward):
                     time per step (forward + its share of the backward) and peak memory.

Peak memory on the CPU: torch has no CPU allocator statistics, so it is measured as the peak
bytes of the distinct storages that autograd holds for backward (torch.autograd.graph.
saved_tensors_hooks: a view of a cache buffer counts its buffer once; ``saved_peak_bytes``), plus
the buffered caches' gradient accumulators, which are allocated at the first backward and are not
saved tensors (``cache_grad_bytes``); ``peak_bytes`` is their sum. It is measured in a separate,
untimed run (the hook costs Python time per saved tensor). On CUDA: torch.cuda.max_memory_allocated
over the timed runs.

CPU: model n_layer 2, d_model 64, H 2, D 32, d_inner 128, V 64, fp32, one intra-op thread (decode
ops are tiny; threads add only synchronisation). S = 256 at B = 1 and 8, so that
`pytest benchmarks/bench_kv_cache.py --benchmark-only` stays under a minute.
GPU (skipped without CUDA): the paper's generator (6 layers, d_model 500, 10 heads of 50), fp32,
M = 1024, S = 256 and 1024, B = 1 and 8.
"""
import platform

import pytest
import torch

from saved_memory import SavedTensorBytes as SavedBytes  # noqa: F401  (bench_rollout imports it)
import torch.nn.functional as F

from tgan.model import GeneratorConfig, TransformerXL
from tgan.ops.kv_cache import KVCache, cpp_available

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
PROVIDERS = ("cpp", "torch", "cat")
if CUDA:
    MODEL = dict(vocab_size=310, n_layer=6, d_model=500, n_head=10, d_head=50, d_inner=1000, mem_len=1024)
    CASES = [(1, 256), (8, 256), (1, 1024), (8, 1024)]  # (B, S)
else:
    MODEL = dict(vocab_size=64, n_layer=2, d_model=64, n_head=2, d_head=32, d_inner=128, mem_len=256)
    CASES = [(1, 256), (8, 256)]  # S = 1024 on the CPU: see bench_rollout.py (R = S = 1024)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def device_name():
    if CUDA:
        return torch.cuda.get_device_name()
    return f"cpu {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"


def _skip_missing(provider):
    if provider == "cpp" and not cpp_available():
        pytest.skip("the C++ extension tgan._C is not built")


def grad_buffer_bytes(cache) -> int:
    """Bytes of a buffered cache's gradient accumulators (0 for the cat cache)."""
    c = cache._c
    if cache.capacity is None:
        return 0
    elem = torch.empty(0, dtype=c.dtype).element_size()
    return 2 * c.n_layer * cache.batch * c.n_head * cache.capacity * c.d_head * elem


def env_info() -> dict:
    """extra_info of every decode benchmark: device, torch version, model sizes."""
    return {"device": device_name(), "torch": torch.__version__,
            "model": {k: v for k, v in MODEL.items() if k != "mem_len"}}


def run_info(benchmark, saved_peak: int, cache, per_key: str, count: int) -> dict:
    """``env_info()`` plus peak memory and the median time per step (``per_key``, ms, the timed
    run's median over ``count`` steps)."""
    grad_bytes = grad_buffer_bytes(cache)
    info = {**env_info(), "saved_peak_bytes": saved_peak, "cache_grad_bytes": grad_bytes,
            "peak_bytes": saved_peak + grad_bytes}
    if CUDA:
        info["max_memory_allocated"] = torch.cuda.max_memory_allocated()
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        info[per_key] = stats.stats.median / count * 1e3
    return info


def small_generator(**changes):
    cfg = dict(MODEL, tgt_len=256, eval_mem_len=4096, dropout=0.0, attn_dropout=0.0)
    cfg.update(changes)
    torch.manual_seed(0)
    return TransformerXL(GeneratorConfig(**cfg)).to(DEVICE)


# ---- the cache alone ---------------------------------------------------------------------------------

@pytest.mark.parametrize("B", (1, 8))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_append(benchmark, provider, B):
    _skip_missing(provider)
    n_layer, H, D, S = 2, 2, 32, 256
    proj = torch.randn(16, 2 * H * D, device=DEVICE, requires_grad=True)
    xs = torch.randn(S, B, 1, 16, device=DEVICE)
    kvs = None
    cache = KVCache(n_layer, B, S, H, D, device=DEVICE, impl=provider)

    def run():
        nonlocal kvs
        cache.reset()
        kvs = [(xs[t] @ proj).view(B, 1, 2, H, D).unbind(2) for t in range(S)]  # same for every provider
        loss = 0
        for t in range(S):
            for layer in range(n_layer):
                k, v = cache.append(layer, *kvs[t])
                loss = loss + k[:, -1, 0, 0].sum() + v[:, 0, 0, 0].sum()
        loss.backward()
        _sync()

    run()
    benchmark.pedantic(run, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    info = {"device": device_name(), "torch": torch.__version__, "B": B, "S": S, "n_layer": n_layer,
            "H": H, "D": D}
    if stats is not None:
        info["us_per_append_fwd_bwd"] = stats.stats.median / (S * n_layer) * 1e6
    benchmark.extra_info.update(info)


# ---- a differentiable decode segment of the generator -------------------------------------------------

def decode_segment(gen, mems, B, S, cache, weights):
    """S straight-through steps from memory ``mems``, then one backward. Returns the state's cache."""
    M = mems[0].shape[1]
    V = gen.cfg.vocab_size
    state = gen.init_state(mems, batch_size=B, cache=cache, capacity=M + S)
    x = F.one_hot(torch.zeros(B, dtype=torch.long, device=DEVICE), V).float()
    outs = []
    for _ in range(S):
        logits = gen.step(x, state, max_context=M + S)
        p = torch.softmax(logits, -1)
        x = F.one_hot(logits.argmax(-1), V).to(p) + (p - p.detach())  # straight-through, no noise
        outs.append(x)
    (torch.stack(outs, 1) * weights).sum().backward()
    return state.cache


@pytest.mark.parametrize("B,S", CASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_decode_step(benchmark, provider, B, S):
    _skip_missing(provider)
    gen = small_generator()
    M, V = gen.cfg.mem_len, gen.cfg.vocab_size
    with torch.no_grad():
        _, mems = gen(torch.randint(1, V, (B, M), device=DEVICE), mem_len=M)
    weights = torch.randn(B, S, V, device=DEVICE)
    cache = provider

    # Untimed run with the saved-tensor hook: the CPU peak memory (and the warm-up).
    with SavedBytes() as sb:
        cache = decode_segment(gen, mems, B, S, cache, weights)
    gen.zero_grad(set_to_none=True)

    def run():
        nonlocal cache
        cache = decode_segment(gen, mems, B, S, cache, weights)
        gen.zero_grad(set_to_none=True)
        _sync()

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(run, rounds=1 if S > 256 else 5, iterations=1)
    benchmark.extra_info.update(B=B, S=S, M=M, **run_info(benchmark, sb.peak, cache, "ms_per_step", S))
