"""The generator's adversarial step end to end: a straight-through rollout cut into TBPTT segments,
each scored by the BERT discriminator and back-propagated at once.

Parametrized by rollout length at a fixed segment length, so the time grows linearly and the peak
memory stays flat. Peak memory is recorded as:
  - on CUDA: torch.cuda.max_memory_allocated (bytes) during the step;
  - on the CPU: the peak of bytes held by autograd for backward, counted with
    torch.autograd.graph.saved_tensors_hooks (torch's CPU allocator keeps no peak statistic);
    weights and optimizer state are not included in either number's delta.
Model: the `tiny` preset generator and discriminator (CPU) or `small` (CUDA), batch 4.

test_adversarial_step_paths times the step's two gradient paths side by side: weight gradients
once per segment (``segment_sums``, the default) against plain autograd's per-token ones
(``per_token``, ``TransformerXL.segment_grads = False``), at batch 4, 16 and 64 and rollouts of
256 and 2048 tokens on CUDA (batch 4, 256 tokens on the CPU). test_decode_modes times
``generate_tokens`` once the context is full, per ``TGAN_DECODE`` mode (eager, static, graph; graph
on CUDA only, where it is one CUDA graph per token), tokens/s at batch 4, 16 and 64.

    pytest benchmarks/bench_adversarial_step.py --benchmark-only
"""
import platform

import pytest
import torch

from tgan.gan.losses import RSGAN
from saved_memory import SavedTensorBytes
from tgan.gan.rollout import generator_adversarial_step
from tgan.model import BertDiscriminator, TransformerXL, preset

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
SEGMENT = 128
LENGTHS = (256, 512, 1024) if not CUDA else (256, 512, 1024, 2048, 4096)
BATCH = 4


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    p = preset("small" if CUDA else "tiny", vocab_size=310)
    p.bert.vocab_size = 311
    g = TransformerXL(p.generator).to(DEVICE)
    d = BertDiscriminator(p.bert).to(DEVICE)
    return g, d


@pytest.mark.parametrize("rollout_len", LENGTHS)
def test_generator_adversarial_step(benchmark, models, rollout_len):
    g, d = models
    prefix = 5
    real = torch.randint(2, 300, (BATCH, prefix + rollout_len), device=DEVICE)
    counter = SavedTensorBytes()

    def step():
        g.zero_grad(set_to_none=True)
        with counter:
            generator_adversarial_step(g, d, RSGAN(), real, prefix, rollout_len, SEGMENT, beta=2.0)
        if CUDA:
            torch.cuda.synchronize()

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=2 if not CUDA else 5, warmup_rounds=0 if not CUDA else 1)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if CUDA else platform.processor() or "cpu",
        torch=torch.__version__, rollout_len=rollout_len, segment_len=SEGMENT, batch=BATCH,
        peak_saved_bytes=counter.peak,
        tokens_per_s=BATCH * rollout_len / benchmark.stats.stats.mean,
    )
    if CUDA:
        benchmark.extra_info["max_memory_allocated"] = torch.cuda.max_memory_allocated()


PATH_BATCHES = (4, 16, 64) if CUDA else (4,)
PATH_LENGTHS = (256, 2048) if CUDA else (256,)


@pytest.mark.parametrize("rollout_len", PATH_LENGTHS)
@pytest.mark.parametrize("batch", PATH_BATCHES)
@pytest.mark.parametrize("path", ["segment_sums", "per_token"])
def test_adversarial_step_paths(benchmark, models, path, batch, rollout_len):
    g, d = models
    prefix = 5
    real = torch.randint(2, 300, (batch, prefix + rollout_len), device=DEVICE)
    g.segment_grads = path == "segment_sums"

    def step():
        g.zero_grad(set_to_none=True)
        generator_adversarial_step(g, d, RSGAN(), real, prefix, rollout_len, SEGMENT, beta=2.0)
        if CUDA:
            torch.cuda.synchronize()

    try:
        step()  # compiles outside the timings
        if CUDA:
            torch.cuda.reset_peak_memory_stats()
        benchmark.pedantic(step, rounds=2 if CUDA else 1, iterations=1)
    finally:
        g.segment_grads = True
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if CUDA else platform.processor() or "cpu",
        torch=torch.__version__, path=path, batch=batch, rollout_len=rollout_len,
        segment_len=SEGMENT, tokens_per_s=batch * rollout_len / benchmark.stats.stats.mean)
    if CUDA:
        benchmark.extra_info["max_memory_allocated"] = torch.cuda.max_memory_allocated()


DECODE_TOKENS = 256


@pytest.mark.parametrize("batch", PATH_BATCHES)
@pytest.mark.parametrize("mode", ["eager", "static", "graph"])
def test_decode_modes(benchmark, models, mode, batch):
    """The benchmark's time is a whole call: filling the context (eagerly, in every mode) and
    DECODE_TOKENS tokens in ``mode``; ``tokens_per_s`` takes the fill's time (a call without the
    tokens, timed apart) out."""
    import time

    from tgan.sampling import generate_tokens

    if mode == "graph" and not CUDA:
        pytest.skip("graph decoding is timed on CUDA (inductor's CPU compile takes about 30 s)")
    g, _ = models
    context = g.cfg.mem_len

    def run(n):  # the window fills after `context` tokens; the rest decode in `mode`
        out = generate_tokens(g, batch, context + 1 + n, context=context, seed=1, decode=mode,
                              device=DEVICE)
        if CUDA:
            torch.cuda.synchronize()
        return out

    g.eval()
    try:
        run(8)  # compiles and captures outside the timings
        fills = []
        for _ in range(3):
            t0 = time.perf_counter()
            run(0)
            fills.append(time.perf_counter() - t0)
        benchmark.pedantic(run, args=(DECODE_TOKENS,), rounds=3 if CUDA else 1, iterations=1)
    finally:
        g.train()
    fill = sorted(fills)[1]
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if CUDA else platform.processor() or "cpu",
        torch=torch.__version__, mode=mode, batch=batch, context=context, tokens=DECODE_TOKENS,
        fill_s=fill,
        tokens_per_s=batch * DECODE_TOKENS / max(benchmark.stats.stats.mean - fill, 1e-9))
