"""gumbel_softmax_st benchmarks: the fused Triton kernels vs PyTorch.

Providers:
  torch_gumbel  torch.nn.functional.gumbel_softmax(hard=True, tau=1/beta): torch's own noise, soft
                sample saved for backward
  reference     ``tgan.ops.gumbel_softmax.naive.gumbel_softmax_st`` (its Philox noise is computed in PyTorch)
  triton        the public op on the Triton kernels, CUDA only (the interpreter is not a benchmark)
Modes: fwd (with autograd recording, as in a rollout), bwd (gradient of the logits; the forward
runs outside the timed function), fwd+bwd. Every call draws a fresh seed, as a rollout step does.

Shapes: R = B*T rows in {64, 4096, 131072} x V in {310, 390}; fp32 and bf16 on CUDA. On the CPU:
fp32, R in {64, 4096}, torch providers only, so that `pytest benchmarks/bench_gumbel_softmax.py
--benchmark-only` stays within a couple of minutes.

`min_bytes` in extra_info is the traffic floor of the op (see tgan/ops/gumbel_softmax/kernel.py):
forward R*V*b logits read + R*V*b one-hot written + 8R index bytes; backward R*V*b logits +
R*V*b incoming gradient read + R*V*b gradient written (b = element size). For R = 131072,
V = 390, bf16 that is 205.5 MB forward and 306.7 MB backward (arithmetic, not a measurement).
`test_copy_bandwidth` times `copy_` of an [R, V] tensor (2*R*V*b bytes moved), the yardstick the
forward's achieved bandwidth is compared with. `saved_bytes`: the peak bytes autograd holds for
the backward of one forward, the logits not counted (benchmarks/saved_memory.py: SavedTensorBytes).
"""
import platform

import pytest
import torch
import torch.nn.functional as F

from saved_memory import SavedTensorBytes
from tgan.ops import gumbel_softmax_st

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
ROWS = (64, 4096, 131072)
CPU_MAX_ROWS = 4096
VOCABS = (310, 390)
PROVIDERS = ("torch_gumbel", "reference", "triton")
MODES = ("fwd", "bwd", "fwd+bwd")
DTYPES = ("float32", "bfloat16")
BETA = 2.0


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _device_name():
    if CUDA:
        return torch.cuda.get_device_name()
    return f"cpu {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _op(provider, monkeypatch):
    if provider == "torch_gumbel":
        return lambda x: F.gumbel_softmax(x, tau=1.0 / BETA, hard=True)
    monkeypatch.setenv("TGAN_BACKEND", "torch" if provider == "reference" else "triton")
    return lambda x: gumbel_softmax_st(x, BETA)[0]


def _min_bytes(R, V, elem, mode):
    fwd = 2 * R * V * elem + 8 * R
    bwd = 3 * R * V * elem
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("R", ROWS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_gumbel_softmax(benchmark, monkeypatch, provider, mode, R, V, dtype):
    if provider == "triton" and not CUDA:
        pytest.skip("triton provider needs CUDA (the interpreter is not a benchmark)")
    if not CUDA and (R > CPU_MAX_ROWS or dtype != "float32"):
        pytest.skip("CPU run: fp32 and R <= 4096 only")
    dt = getattr(torch, dtype)
    op = _op(provider, monkeypatch)
    x = torch.randn(R, V, device=DEVICE, dtype=dt, requires_grad=True)
    grad = torch.randn(R, V, device=DEVICE, dtype=dt)

    if mode == "fwd":
        def fn():
            y = op(x)
            _sync()
            return y
    elif mode == "bwd":
        y = op(x)

        def fn():
            g = torch.autograd.grad(y, x, grad, retain_graph=True)
            _sync()
            return g
    else:
        def fn():
            g = torch.autograd.grad(op(x), x, grad)
            _sync()
            return g

    fn()  # warm-up: triton compilation, allocator
    with SavedTensorBytes(ignore=[x]) as saved:  # what the forward keeps for backward (untimed)
        probe = op(x)
    del probe
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    benchmark(fn)
    benchmark.extra_info.update(
        provider=provider, mode=mode, R=R, V=V, dtype=dtype, device=_device_name(),
        torch=torch.__version__, min_bytes=_min_bytes(R, V, x.element_size(), mode),
        peak_memory_bytes=torch.cuda.max_memory_allocated() if CUDA else "not measured",
        saved_bytes=saved.peak,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("R", ROWS)
def test_copy_bandwidth(benchmark, R, V, dtype):
    """The device's copy bandwidth on an [R, V] tensor: the yardstick of the forward's traffic.

    ``bytes_moved`` = 2·R·V·b (one read, one write), the forward's floor less its 8R index bytes.
    """
    if not CUDA and (R > CPU_MAX_ROWS or dtype != "float32"):
        pytest.skip("CPU run: fp32 and R <= 4096 only")
    src = torch.randn(R, V, device=DEVICE).to(getattr(torch, dtype))
    dst = torch.empty_like(src)

    def fn():
        dst.copy_(src)
        _sync()

    fn()
    benchmark(fn)
    benchmark.extra_info.update(
        provider="copy", R=R, V=V, dtype=dtype, device=_device_name(), torch=torch.__version__,
        bytes_moved=2 * src.numel() * src.element_size(),
    )
