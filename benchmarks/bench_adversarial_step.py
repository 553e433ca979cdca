"""The generator's adversarial step end to end: a straight-through rollout cut into TBPTT segments,
each scored by the BERT discriminator and back-propagated at once.

Parametrized by rollout length at a fixed segment length, so the time grows linearly and the peak
memory stays flat. Peak memory is recorded as:
  - on CUDA: torch.cuda.max_memory_allocated (bytes) during the step;
  - on the CPU: the peak of bytes held by autograd for backward, counted with
    torch.autograd.graph.saved_tensors_hooks (torch's CPU allocator keeps no peak statistic);
    weights and optimizer state are not included in either number's delta.
Model: the `tiny` preset generator and discriminator (CPU) or `small` (CUDA), batch 4.

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
