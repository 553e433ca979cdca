"""rel_attention benchmarks: fused Triton kernel vs eager PyTorch formulations.

Providers:
  eager      Transformer-XL's formulation: einsums + rel_shift (``naive.rel_attention_relshift``)
  reference  the gather reference (``naive.rel_attention``)
  sdpa       F.scaled_dot_product_attention, causal (bottom-right aligned, as query i sees keys
             j <= M+i) over the same shapes WITHOUT the relative term: a floor, not the same op
  triton     the fused kernels (``tgan.ops.rel_attention.triton``), CUDA only; the backward in
             three passes (TGAN_ATTN_BWD=split, the default)
  triton_fused  the same forward, the backward in one pass with atomics (TGAN_ATTN_BWD=fused)
  flex       what a user would write with FlexAttention (CUDA only): torch.compile(flex_attention)
             on (q+u)·k with a ``score_mod`` that adds a precomputed relative term
             bd = (q+vb)·r^T [B, H, T, M+T] indexed by distance, and a causal block mask
  compiled   torch.compile of the eager formulation (CUDA only)
Both compiled baselines are checked against the eager output before they are timed (relative
error under 3e-2 in bf16), and compile outside the timed function (the warm-up call).
Modes: fwd, bwd (gradients of all inputs; the forward runs outside the timed function), fwd+bwd.

GPU: T = 128, 512, 2048 with M = T, H = 8, D = 64, bf16, B = 16384 // T (16k query tokens).
CPU: fp32, T = 32, 128 (M = T, 1024 query tokens), torch providers only, so that
`pytest benchmarks/bench_rel_attention.py --benchmark-only` stays near a minute on a laptop CPU.

FLOP count (benchmark.extra_info). P = B·H·(T·M + T(T+1)/2) visible (query, key) pairs (causal:
query i sees M+i+1 keys; with M = T that is 3/4 of the T x L pairs). One "product" = 2·P·D FLOPs.
  - `tflops`: the op's own work, the same count for every provider, so the column compares
    speed: forward 3 products (QK^T, the relative term (q+vb)·r per pair, PV); backward 8
    (recomputed QK^T and relative term, dO·V^T, dV, dK, dq through k, dq through r, dr).
  - `kernel_tflops` (triton): what the kernels execute. The relative product of a tile pair
    covers a window of 2·BN distances for BN keys (factor RW = 2), so forward 2 + RW = 4
    products; backward: dk/dv pass 4 + RW, dq pass 3 + 2·RW, dr pass 2 + 2·RW, 19 in all;
    triton_fused's backward 5 + 3·RW = 11 (scores, dO·V^T, dV, dK, dS·K, and the windowed
    dS·R and dr once each).
  - `sdpa_tflops` (sdpa): its own 2 forward / 5 backward products.
Diagonal tiles computed in full and masked are not counted.
Activation memory (any device, benchmarks/saved_memory.py: SavedTensorBytes): `saved_bytes` = the bytes of the
distinct storages autograd holds for the backward of one forward, the inputs' own storages not
counted; `saved_beyond_output_bytes` = the same without the output's storage, which the next layer
(the output projection) saves in a model anyway: what attention adds to a model's activation
memory. The fused kernel saves O and an fp32 log-sum-exp per query (so its two figures differ by
O); the eager formulation saves the [B, H, T, M+T] probabilities and more. `peak_memory_bytes`
(CUDA): torch.cuda.max_memory_allocated over the whole case.
Bytes (`min_bytes`): each input read once and each output written once (e = element size):
forward e·(2·B·T·H·D + 2·B·L·H·D + L·H·D) + 4·B·H·T; backward adds dO and delta reads and the
gradients: e·(4·B·T·H·D + 4·B·L·H·D + 2·L·H·D) + 8·B·H·T. Worked out for the GPU shapes (bf16,
16k tokens; arithmetic, not measurements): forward 9.7 / 38.7 / 154.6 GFLOP (`flops`) over
about 101-105 MB (`min_bytes`) at T = 128 / 512 / 2048, i.e. 96 / 378 / 1467 FLOP per byte;
backward 25.8 / 103.1 / 412.4 GFLOP, 127 / 504 / 1957 FLOP per byte. The kernels execute 4/3
of the forward count and 19/8 of the backward count (`kernel_flops`).
"""
import platform

import pytest
import torch
import torch.nn.functional as F

from saved_memory import SavedTensorBytes
from tgan.ops.rel_attention import naive

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
H, D = 8, 64
TOKENS = 16384 if CUDA else 1024
T_VALUES = (128, 512, 2048) if CUDA else (32, 128)
PROVIDERS = ("eager", "reference", "sdpa", "triton", "triton_fused", "flex", "compiled")
GPU_ONLY = ("triton", "triton_fused", "flex", "compiled")
MODES = ("fwd", "bwd", "fwd+bwd")
RW = 2  # relative window factor of the kernels' tiles (2·BN rows of r per BN keys)


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _device_name():
    return torch.cuda.get_device_name() if CUDA else (platform.processor() or platform.machine())


def _inputs(B, T, M, dtype):
    L = M + T
    shapes = [(B, T, H, D), (B, L, H, D), (B, L, H, D), (L, H, D), (H, D), (H, D)]
    return [torch.randn(s, device=DEVICE, dtype=dtype).requires_grad_() for s in shapes]


def flex_rel_attention(q, k, v, r, u, vb, flex=None):
    """Relative attention through FlexAttention: q [B, T, H, D]; k, v [B, M+T, H, D]; r [R, H, D].

    The content term runs inside flex_attention on (q+u)·k; the relative term cannot be a plain
    score_mod (it depends on q), so it is precomputed as bd [B, H, T, M+T] (the O(T·L) tensor
    the fused kernel avoids) and indexed by distance M+i-j. ``flex``: a compiled flex_attention
    (eager flex_attention, the default, runs only without gradients on the CPU).
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, T, H, D = q.shape
    L = k.shape[1]
    M, scale = L - T, D ** -0.5
    bd = torch.einsum("bthd,rhd->bhtr", q + vb, r[:L]) * scale

    def score_mod(score, b, h, qi, kv):
        d = M + qi - kv
        return score + bd[b, h, qi, torch.where(d >= 0, d, 0)]  # masked pairs read row 0

    mask = create_block_mask(lambda b, h, qi, kv: kv <= qi + M, None, None, T, L, device=q.device)
    out = (flex or flex_attention)((q + u).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                   score_mod=score_mod, block_mask=mask, scale=scale)
    return out.transpose(1, 2)


_COMPILED = {}


def _provider_fn(provider, T, M):
    if provider == "eager":
        return naive.rel_attention_relshift
    if provider in ("compiled", "flex"):
        # the bwd mode calls backward with retain_graph=True, which donated buffers refuse
        torch._functorch.config.donated_buffer = False
    if provider == "compiled":
        if "eager" not in _COMPILED:
            _COMPILED["eager"] = torch.compile(naive.rel_attention_relshift, dynamic=False)
        return _COMPILED["eager"]
    if provider == "flex":
        if "flex" not in _COMPILED:
            from torch.nn.attention.flex_attention import flex_attention

            _COMPILED["flex"] = torch.compile(flex_attention, dynamic=False)
        return lambda *xs: flex_rel_attention(*xs, flex=_COMPILED["flex"])
    if provider == "reference":
        return naive.rel_attention
    if provider in ("triton", "triton_fused"):
        return _triton_fn("fused" if provider == "triton_fused" else "split")
    from torch.nn.attention.bias import causal_lower_right

    mask = causal_lower_right(T, M + T)  # is_causal=True would align top-left when M > 0

    def sdpa(q, k, v, r, u, vb):  # q, k, v already [B, H, *, D]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    return sdpa


def _triton_fn(backward: str, **kw):
    """The kernels with TGAN_ATTN_BWD=``backward``, set at every call: the backward that follows
    a forward reads it, and the providers of one process take turns."""
    import os

    from tgan.ops.rel_attention import triton as impl

    def fn(*xs):
        os.environ["TGAN_ATTN_BWD"] = backward
        return impl.rel_attention(*xs, **kw)
    return fn


def _relative_error(out, ref):
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def _flop_info(B, T, M, mode, provider):
    pairs = B * H * (T * M + T * (T + 1) // 2)
    product = 2 * pairs * D
    fwd, bwd = {"fwd": (1, 0), "bwd": (0, 1), "fwd+bwd": (1, 1)}[mode]
    info = {"flops": product * (3 * fwd + 8 * bwd)}
    if provider == "triton":
        info["kernel_flops"] = product * ((2 + RW) * fwd + (9 + 5 * RW) * bwd)
    if provider == "triton_fused":  # scores 1 + RW, dO·V^T, dV, dK, dS·K, dS·R RW, dr RW
        info["kernel_flops"] = product * ((2 + RW) * fwd + (5 + 3 * RW) * bwd)
    if provider == "sdpa":
        info["sdpa_flops"] = product * (2 * fwd + 5 * bwd)
    return info


def _min_bytes(B, T, M, mode, elem):
    L = M + T
    fwd = elem * (2 * B * T * H * D + 2 * B * L * H * D + L * H * D) + 4 * B * H * T
    bwd = elem * (4 * B * T * H * D + 4 * B * L * H * D + 2 * L * H * D) + 8 * B * H * T
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T", T_VALUES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_rel_attention(benchmark, provider, T, mode):
    if provider in GPU_ONLY and not CUDA:
        pytest.skip(f"the {provider} provider needs a CUDA device")
    dtype = torch.bfloat16 if CUDA else torch.float32
    M, B = T, max(1, TOKENS // T)
    fn = _provider_fn(provider, T, M)
    xs = _inputs(B, T, M, dtype)
    if provider == "sdpa":
        xs = [x.detach().transpose(1, 2).contiguous().requires_grad_() if x.dim() == 4 else x
              for x in xs]
    grad = torch.randn_like(xs[0])
    wrt = [x for x in xs if provider != "sdpa" or x.dim() == 4]

    def run_fwd():
        out = fn(*xs)
        _sync()
        return out

    def run_fwd_bwd():
        out = fn(*xs)
        torch.autograd.grad(out, wrt, grad)
        _sync()

    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        run_fwd_bwd()  # warm-up: compilation and autotuning stay out of the timings
        if provider in ("flex", "compiled"):
            with torch.no_grad():
                err = _relative_error(fn(*xs), naive.rel_attention_relshift(*xs))
            assert err < 3e-2, f"{provider} differs from the eager output: relative error {err:.2e}"
            if CUDA:  # the check ran the eager formulation: keep its memory out of the peak
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        # activation memory: what autograd holds for backward beyond the inputs (untimed)
        with SavedTensorBytes(ignore=xs) as saved:
            probe = fn(*xs)
        saved_bytes, beyond_output = saved.live, saved.live - saved.held_bytes(probe)
        del probe
        if mode == "fwd":
            with torch.no_grad():
                benchmark(run_fwd)
        elif mode == "bwd":
            out = fn(*xs)

            def run_bwd():
                torch.autograd.grad(out, wrt, grad, retain_graph=True)
                _sync()

            benchmark(run_bwd)
        else:
            benchmark(run_fwd_bwd)
    except torch.cuda.OutOfMemoryError:
        pytest.skip(f"{provider} T={T}: out of GPU memory")

    info = {"device": _device_name(), "dtype": str(dtype).replace("torch.", ""),
            "torch": torch.__version__, "B": B, "T": T, "M": M, "H": H, "D": D,
            "min_bytes": _min_bytes(B, T, M, mode, xs[0].element_size()),
            "saved_bytes": saved_bytes, "saved_beyond_output_bytes": beyond_output}
    if provider in ("triton", "triton_fused"):
        import triton

        from tgan.ops.rel_attention.triton import config_mode

        info["triton"] = triton.__version__
        info["triton_config"] = str(config_mode())
        from tgan.ops.rel_attention.triton import _TUNED

        # what the autotuner picked per kernel (the cache is per kernel, so this is the last key)
        for (name, _decode), tuned in _TUNED.items():
            best = getattr(tuned, "best_config", None)
            if best is not None:
                info[f"autotuned_{name.replace('rel_attention_', '').replace('_kernel', '')}"] = (
                    f"{best.kwargs.get('BLOCK_M')}x{best.kwargs.get('BLOCK_N')}x{best.num_warps}")
    if CUDA:
        info["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    stats = getattr(benchmark, "stats", None)
    seconds = stats.stats.median if stats is not None else None
    for key, flops in _flop_info(B, T, M, mode, provider).items():
        info[key] = flops
        if seconds:
            info[key.replace("flops", "tflops")] = flops / seconds / 1e12
    benchmark.extra_info.update(info)


PAPER_SHAPE = (4, 128, 1024, 10, 50)  # B, T, M, H, D: the paper preset's segment and memory
HEAD_PAD_DTYPE = torch.bfloat16


@pytest.mark.parametrize("path", ["padded", "unpadded"])
def test_backward_head_padding(benchmark, path):
    """The kernels' backward at the paper's head size (D = 50, a 128-token segment over 1024 of
    memory, dropout 0.1, bf16): as `rel_attention` runs it, with the inputs padded to 64 columns
    and the gradients cut back ("padded"), against the kernels on the 100-byte rows themselves
    ("unpadded"). Side by side in one process; the ratio decides whether the padding pays."""
    if not CUDA:
        pytest.skip("the Triton kernels' backward needs a CUDA device")
    from tgan.ops.rel_attention import triton as impl

    (B, T, M, Hp, Dp), p, seed = PAPER_SHAPE, 0.1, 1234
    L = M + T
    q = torch.randn(B, T, Hp, Dp, device=DEVICE, dtype=HEAD_PAD_DTYPE)
    k, v = (torch.randn(B, L, Hp, Dp, device=DEVICE, dtype=HEAD_PAD_DTYPE) for _ in range(2))
    r = torch.randn(L, Hp, Dp, device=DEVICE, dtype=HEAD_PAD_DTYPE)
    u, vb = (torch.randn(Hp, Dp, device=DEVICE, dtype=HEAD_PAD_DTYPE) for _ in range(2))
    o, lse = impl.rel_attention_fwd(q, k, v, r, u, vb, Dp ** -0.5, p, seed)
    do = torch.randn_like(o)

    def backward(pad_head):
        out = impl.rel_attention_bwd(do, q, k, v, r, u, vb, o, lse, Dp ** -0.5, p, seed,
                                     pad_head=pad_head)
        _sync()
        return out

    def run():  # the whole launcher either way: delta, q + u and q + vb, copies, three passes
        return backward(path == "padded")

    reference = backward(path != "padded")
    for got, want in zip(run(), reference):  # padding must not change a gradient
        assert _relative_error(got, want) < 1e-2
    del reference
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    benchmark(run)
    benchmark.extra_info.update({
        "provider": path, "device": _device_name(), "torch": torch.__version__, "B": B, "T": T,
        "M": M, "H": Hp, "D": Dp, "dropout": p})
    if CUDA:
        benchmark.extra_info["peak_memory_bytes"] = torch.cuda.max_memory_allocated()


PAPER_PROVIDERS = ("triton", "triton_fused", "compiled", "sdpa")


@pytest.mark.parametrize("provider", PAPER_PROVIDERS)
def test_rel_attention_paper_shape(benchmark, provider):
    """fwd+bwd at the paper's shape (a 128-token segment over 1024 of memory, H = 10, D = 50,
    bf16) with dropout 0.1, as MLE training runs it: both Triton backwards, torch.compile of the
    eager formulation, and SDPA without the relative term (with the same dropout)."""
    if not CUDA:
        pytest.skip("the paper-shape comparison needs a CUDA device")
    _bench_fwd_bwd(benchmark, provider, PAPER_SHAPE, 0.1)


@pytest.mark.parametrize("provider", PAPER_PROVIDERS)
def test_rel_attention_one_token_grad(benchmark, provider):
    """fwd+bwd of a rollout's token step: one query over 1024 positions of memory with gradient,
    the small preset's heads (B = 4, H = 4, D = 64, bf16) and dropout 0.1. The kernels read r
    (and the dr pass K and V) by key there; both Triton backwards, torch.compile of eager, and
    SDPA without the relative term beside them."""
    if not CUDA:
        pytest.skip("the one-token comparison needs a CUDA device")
    _bench_fwd_bwd(benchmark, provider, (4, 1, 1024, 4, 64), 0.1)


def _bench_fwd_bwd(benchmark, provider, shape, p):
    """Time fwd+bwd of ``provider`` at ``shape`` (B, T, M, H, D), bf16, dropout ``p``; records
    the saved bytes, the peak memory and the op's own FLOPs."""
    B, T, M, Hp, Dp = shape
    L = M + T
    dt = torch.bfloat16
    shapes = [(B, T, Hp, Dp), (B, L, Hp, Dp), (B, L, Hp, Dp), (L, Hp, Dp), (Hp, Dp), (Hp, Dp)]
    xs = [torch.randn(s, device=DEVICE, dtype=dt).requires_grad_() for s in shapes]
    if provider == "sdpa":
        from torch.nn.attention.bias import causal_lower_right

        mask = causal_lower_right(T, L)
        xs = [x.detach().transpose(1, 2).contiguous().requires_grad_() for x in xs[:3]]
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,  # noqa: E731
                                                            dropout_p=p)
    elif provider == "compiled":
        torch._functorch.config.donated_buffer = False
        compiled = torch.compile(naive.rel_attention_relshift, dynamic=False)
        fn = lambda *a: compiled(*a, dropout_p=p)  # noqa: E731
    else:
        fn = _triton_fn("fused" if provider == "triton_fused" else "split", dropout_p=p)
    grad = torch.randn_like(xs[0])

    def run():
        torch.autograd.grad(fn(*xs), xs, grad)
        _sync()

    run()  # compiles and tunes outside the timings
    with SavedTensorBytes(ignore=xs) as saved:
        probe = fn(*xs)
    saved_bytes = saved.live
    del probe
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    benchmark(run)
    info = {"device": _device_name(), "torch": torch.__version__, "B": B, "T": T, "M": M, "H": Hp,
            "D": Dp, "dropout": p, "mode": "fwd+bwd", "saved_bytes": saved_bytes,
            "peak_memory_bytes": torch.cuda.max_memory_allocated()}
    pairs = B * Hp * (T * M + T * (T + 1) // 2)
    info["flops"] = 11 * 2 * pairs * Dp  # forward 3 + backward 8 products, the op's own work
    benchmark.extra_info.update(info)


ONE_TOKEN_PROVIDERS = ("triton", "eager", "compiled", "sdpa")


@pytest.mark.parametrize("provider", ONE_TOKEN_PROVIDERS)
def test_rel_attention_one_token(benchmark, provider):
    """A decode step's attention (no grad): one query over 1024 cached positions, the small preset's
    heads (B = 4, H = 4, D = 64, bf16). The kernel reads r by key there (an index shift, no gather
    window); eager, torch.compile of eager, and SDPA without the relative term beside it."""
    if not CUDA:
        pytest.skip("the one-token comparison needs a CUDA device")
    B, T, M, Hp, Dp = 4, 1, 1024, 4, 64
    L, dt = M + T, torch.bfloat16
    shapes = [(B, T, Hp, Dp), (B, L, Hp, Dp), (B, L, Hp, Dp), (L, Hp, Dp), (Hp, Dp), (Hp, Dp)]
    xs = [torch.randn(s, device=DEVICE, dtype=dt) for s in shapes]
    if provider == "sdpa":
        q, k, v = (x.transpose(1, 2) for x in xs[:3])
        fn = lambda *_: F.scaled_dot_product_attention(q, k, v)  # noqa: E731  (one query sees all keys)
    elif provider == "compiled":
        fn = torch.compile(naive.rel_attention_relshift, dynamic=False)
    elif provider == "eager":
        fn = naive.rel_attention_relshift
    else:
        fn = _triton_fn("split")
    want = naive.rel_attention_relshift(*xs)
    with torch.no_grad():
        if provider != "sdpa":
            assert _relative_error(fn(*xs), want) < 3e-2
        fn(*xs)  # compiles outside the timings

        def run():
            fn(*xs)
            _sync()
        benchmark(run)
    benchmark.extra_info.update({"provider": provider, "device": _device_name(), "torch": torch.__version__,
                                 "B": B, "T": T, "M": M, "H": Hp, "D": Dp, "mode": "fwd"})
