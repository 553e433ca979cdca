"""rel_attention: the fused Triton kernels against the gather reference, and the rel_shift port.

On the CPU the kernels run under the Triton interpreter (TRITON_INTERPRET=1, set by conftest) in
fp32/fp16 on small odd shapes; `TGAN_BACKEND=triton` forces them through the public op. The
`gpu` tests compare bf16/fp16 errors with PyTorch's own; they need TRITON_INTERPRET=0.
"""
from types import SimpleNamespace

import pytest
import torch

from tgan.ops import rel_attention
from tgan.ops.rel_attention import naive
from tgan.ops._backend import interpret_mode

NAMES = ("q", "k", "v", "r", "u", "vb")


def assert_close(name, actual, expected, atol, rtol):
    """allclose that says how far off, where, and how many elements fail."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    diff = (a - e).abs()
    bad = ~(diff <= atol + rtol * e.abs())  # also catches NaN
    if bad.any():
        worst = torch.where(bad, diff.nan_to_num(float("inf")), -1.0)
        flat = int(worst.flatten().argmax())
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape))
        rel = diff / e.abs().clamp_min(1e-12)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.numel()} elements exceed atol={atol}, rtol={rtol}; "
            f"max abs err {diff.max().item():.3e}, max rel err {rel.max().item():.3e}; "
            f"worst at {idx}: got {a[idx].item():.6g}, expected {e[idx].item():.6g}"
        )


def make_inputs(B, T, M, H, D, dtype=torch.float32, extra_r=0, device="cpu"):
    """q [B,T,H,D], k, v [B,M+T,H,D], r [M+T+extra_r,H,D], u, vb [H,D], leaf tensors."""
    L = M + T
    shapes = [(B, T, H, D), (B, L, H, D), (B, L, H, D), (L + extra_r, H, D), (H, D), (H, D)]
    return [torch.randn(s, dtype=torch.float64).to(device=device, dtype=dtype).requires_grad_()
            for s in shapes]


def out_and_grads(fn, inputs, grad_out, **kwargs):
    out = fn(*inputs, **kwargs)
    grads = torch.autograd.grad(out, inputs, grad_out.to(out.dtype))
    return out, grads


def as_float64(inputs):
    return [x.detach().double().requires_grad_() for x in inputs]


@pytest.fixture
def triton_backend(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TGAN_BACKEND", "triton")
    from tgan.ops.rel_attention import triton as impl

    return impl


def check_kernel(inputs, atol=1e-4, rtol=1e-4, **kwargs):
    """Kernel (through the public op) vs the fp64 gather reference: output and all six gradients."""
    ref_in = as_float64(inputs)
    grad_out = torch.randn(inputs[0].shape, dtype=torch.float64)
    out, grads = out_and_grads(rel_attention, inputs, grad_out.to(inputs[0].device), **kwargs)
    assert "RelAttentionFunction" in type(out.grad_fn).__name__, "the kernel did not run"
    ref, ref_grads = out_and_grads(naive.rel_attention, ref_in, grad_out.to(ref_in[0].device),
                                   **kwargs)
    assert_close("out", out, ref, atol, rtol)
    for name, g, gr in zip(NAMES, grads, ref_grads):
        assert_close(f"d{name}", g, gr, atol, rtol)
    return grads


# ----------------------------------------------------------------- rel_shift port (no kernel)


@pytest.mark.parametrize("T,M", [(1, 0), (1, 9), (7, 0), (63, 37), (16, 48)])
def test_relshift_equals_gather_reference(T, M):
    inputs = make_inputs(2, T, M, 3, 10, dtype=torch.float64, extra_r=4)
    grad_out = torch.randn(2, T, 3, 10, dtype=torch.float64)
    out, grads = out_and_grads(naive.rel_attention_relshift, inputs, grad_out)
    ref, ref_grads = out_and_grads(naive.rel_attention, as_float64(inputs), grad_out)
    assert_close("out", out, ref, 1e-12, 1e-12)
    for name, g, gr in zip(NAMES, grads, ref_grads):
        assert_close(f"d{name}", g, gr, 1e-12, 1e-12)


# ----------------------------------------------------------------------- kernel, interpreter


@pytest.mark.parametrize("T,M,H", [(63, 0, 2), (63, 37, 3), (63, 128, 2)])
def test_kernel_matches_reference(triton_backend, T, M, H):
    grads = check_kernel(make_inputs(2, T, M, H, 50, extra_r=5))
    assert grads[3][M + T:].abs().max() == 0  # rows of r past the largest distance


@pytest.mark.parametrize("D", [32, 64, 128])
def test_kernel_head_dims(triton_backend, D):
    check_kernel(make_inputs(2, 20, 11, 2, D), scale=0.3)


@pytest.mark.parametrize("M", [0, 37])
def test_kernel_decode_one_query(triton_backend, M):
    check_kernel(make_inputs(2, 1, M, 3, 50))


@pytest.mark.parametrize("splits", [1, 3, 4, 5])
def test_one_token_step_split_over_keys(triton_backend, monkeypatch, splits):
    # a one-token step whose forward and dq pass split the keys over programs (flash-decoding),
    # output and every gradient against the reference: 5 tiles of 32 keys
    # over 3 splits take 2, 2 and 1 tiles, over 4 splits 2, 2, 1 and none (an empty split), over
    # 5 one each, and with 1 there is no split;
    # with dropout, against the reference with the kernels' mask; the counters end at zero
    monkeypatch.setattr(triton_backend, "_fwd_splits", lambda n_bh, L, device: splits)
    B, T, M, H, D, p, seed = 2, 1, 140, 2, 50, 0.3, 77
    check_kernel(make_inputs(B, T, M, H, D))
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, M + T, seed, p, "cpu")
    check_dropout_against_mask(triton_backend, monkeypatch, make_inputs(B, T, M, H, D), keep, p, seed)
    if splits > 1:
        assert int(triton_backend._split_lock(torch.device("cpu"), B * H).abs().sum()) == 0


def test_one_token_split_counts():
    from tgan.ops.rel_attention import triton as impl

    # H200 (132 SMs): the small preset's 4 x 4 pairs over 1025 keys take 8 splits, about one
    # program per SM; 64 and 66 pairs (half the SMs) take 2; from 67 on none; 64 keys stay whole
    assert impl._splits_for(16, 1025, 132) == 8
    assert impl._splits_for(64, 1025, 132) == 2
    assert impl._splits_for(66, 1025, 132) == 2
    assert impl._splits_for(67, 1025, 132) == 1
    assert impl._splits_for(80, 1025, 132) == 1
    assert impl._splits_for(320, 1025, 132) == 1
    assert impl._splits_for(16, 64, 132) == 1
    assert impl._splits_for(1, 100_000, 132) == impl._MAX_SPLITS


@pytest.mark.parametrize("bm,bn", [(32, 32), (64, 64)])
def test_kernel_one_query_with_wide_query_tiles(triton_backend, monkeypatch, bm, bn):
    # a one-token step with 32+ row tiles (TGAN_TRITON_CONFIG pinned): the dk/dv pass takes its
    # transposed form, where r is read by key too
    monkeypatch.setenv("TGAN_TRITON_CONFIG", f"{bm}x{bn}x4")
    check_kernel(make_inputs(2, 1, 45, 2, 50))


@pytest.mark.parametrize("bm,bn", [(16, 16), (16, 32), (32, 64), (64, 64)])
def test_kernel_other_tiles(triton_backend, monkeypatch, bm, bn):
    # the interpreter runs 32 x 32 tiles; the GPU autotunes among 64 x 64, 32 x 64, 32 x 32 and
    # 16 x 32 / 16 x 64 when decoding: every tile shape must give the same result
    monkeypatch.setattr(triton_backend, "_blocks", lambda T, D: (bm, bn, 64))
    check_kernel(make_inputs(2, 40, 19, 1, 50))


def test_pinned_config_sets_the_tiles_of_every_kernel(triton_backend, monkeypatch):
    # TGAN_TRITON_CONFIG=BMxBNxW is honoured by the interpreter too: record each launch's tiles
    from tgan.ops.rel_attention import kernel as kern

    seen = {}

    class Recorder:
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen[self.name] = (kw["BLOCK_M"], kw["BLOCK_N"])
                return self.fn[grid](*args, **kw)
            return launch

    for name in triton_backend._DEFAULT_CONFIGS:
        monkeypatch.setattr(kern, name, Recorder(name, getattr(kern, name)))
    monkeypatch.setenv("TGAN_TRITON_CONFIG", "16x64x4")
    for mode in ("split", "fused"):  # the fused backward's kernel runs in its mode only
        monkeypatch.setenv("TGAN_ATTN_BWD", mode)
        check_kernel(make_inputs(2, 40, 19, 1, 50))
    assert seen == {name: (16, 64) for name in triton_backend._DEFAULT_CONFIGS}


@pytest.mark.parametrize("T,D,launched", [(40, 50, 64), (17, 10, 16), (1, 50, 50), (16, 50, 50),
                                         (40, 32, 32)])
def test_backward_of_segments_runs_at_a_padded_head_size(triton_backend, monkeypatch, T, D,
                                                         launched):
    # rows of D = 50 are 100 bytes, loaded element by element: segments (T > 16) run the backward
    # padded to BLOCK_D, one-token steps keep their rows, powers of two need no padding
    seen = record_launch_head_sizes(triton_backend, monkeypatch)
    grads = check_kernel(make_inputs(2, T, 5, 2, D))
    assert {d for name, d in seen if "_bwd_" in name} == {launched}
    assert {d for name, d in seen if "_fwd_" in name} == {D}
    assert all(g.is_contiguous() and g.shape[-1] == D for g in grads)


def test_padding_that_would_outgrow_int32_offsets_is_skipped(triton_backend, monkeypatch):
    seen = record_launch_head_sizes(triton_backend, monkeypatch)
    extent = triton_backend._extent  # padded rows (64 columns) "span" 2^31 elements here
    monkeypatch.setattr(triton_backend, "_extent", lambda shape, stride: (
        2**31 if shape[-1] == 64 else extent(shape, stride)))
    check_kernel(make_inputs(2, 40, 5, 2, 50))
    assert {d for _, d in seen} == {50}


def record_launch_head_sizes(triton_backend, monkeypatch) -> list:
    """(kernel, head size it was launched at) of every launch from here on."""
    seen = []
    launch = triton_backend._launch

    def record(name, grid, args, T, D, meta, reset=()):
        seen.append((name, D))
        return launch(name, grid, args, T, D, meta, reset)

    monkeypatch.setattr(triton_backend, "_launch", record)
    return seen


def test_config_modes_and_bad_values(triton_backend, monkeypatch):
    # unset: the pinned tiles (one compile per kernel and specialization on a cold start)
    monkeypatch.delenv("TGAN_TRITON_CONFIG", raising=False)
    assert triton_backend.config_mode() == "default"
    for name, cfg in triton_backend._DEFAULT_CONFIGS.items():
        assert triton_backend._configs(128, name) == (cfg,)
    monkeypatch.setenv("TGAN_TRITON_CONFIG", "autotune")
    for name, cfgs in triton_backend._KERNEL_CONFIGS.items():
        assert triton_backend._configs(128, name) == cfgs and set(cfgs) <= set(triton_backend._CONFIGS)
        decode = triton_backend._KERNEL_DECODE_CONFIGS[name]
        assert triton_backend._configs(16, name) == decode
        assert set(decode) <= set(triton_backend._DECODE_CONFIGS)
    monkeypatch.setenv("TGAN_TRITON_CONFIG", "default")
    for name, cfg in triton_backend._DEFAULT_CONFIGS.items():
        assert triton_backend._configs(128, name) == (cfg,)
        assert triton_backend._configs(1, name) == (triton_backend._DECODE_DEFAULTS[name],)
    monkeypatch.setenv("TGAN_TRITON_CONFIG", "32X64x8")
    assert triton_backend._configs(128, "rel_attention_bwd_dq_kernel") == ((32, 64, 8),)
    for bad in ("64x32x8", "48x64x8", "32x64", "fast", "32x64x3"):
        monkeypatch.setenv("TGAN_TRITON_CONFIG", bad)
        with pytest.raises(ValueError, match="TGAN_TRITON_CONFIG"):
            triton_backend.config_mode()


def test_kernel_saves_only_output_and_logsumexp(triton_backend):
    """Activation memory: beyond its inputs the kernel keeps O and the log-sum-exp, no [T, L]."""
    from saved_memory import SavedTensorBytes

    B, T, M, H, D = 2, 24, 16, 2, 16
    inputs = make_inputs(B, T, M, H, D)
    with SavedTensorBytes(ignore=inputs) as kernel:
        out = rel_attention(*inputs)
    assert "RelAttentionFunction" in type(out.grad_fn).__name__
    assert kernel.peak == out.nbytes + B * H * T * 4  # O + fp32 log-sum-exp
    with SavedTensorBytes(ignore=inputs) as eager:
        naive.rel_attention_relshift(*inputs)
    assert eager.peak >= B * H * T * (M + T) * 4  # at least the probabilities
    assert kernel.peak < eager.peak / 4


def test_kernel_strided_inputs(triton_backend):
    B, T, M, H, D = 2, 17, 9, 2, 24
    L = M + T
    q = torch.randn(B, H, T, D).transpose(1, 2).requires_grad_()  # [B, T, H, D], not contiguous
    kv = torch.randn(B, L, H, 2 * D)
    k, v = kv[..., :D].requires_grad_(), kv[..., D:].requires_grad_()
    r = torch.randn(H, L, D).transpose(0, 1).requires_grad_()
    u, vb = torch.randn(H, D, requires_grad=True), torch.randn(H, D, requires_grad=True)
    inputs = [q, k, v, r, u, vb]
    rel_attention(*inputs).sum().backward()  # the output gradient is an expanded (stride 0) tensor
    ref_in = as_float64(inputs)
    naive.rel_attention(*ref_in).sum().backward()
    for name, x, xr in zip(NAMES, inputs, ref_in):
        assert_close(f"d{name}", x.grad, xr.grad, 1e-4, 1e-4)


def test_kernel_r_without_grad(triton_backend):
    check_without_r_grad()


def check_without_r_grad():
    """Kernel vs the fp64 reference when r needs no gradient: the other five gradients."""
    q, k, v, r, u, vb = make_inputs(2, 9, 5, 2, 16)
    r = r.detach()
    out = rel_attention(q, k, v, r, u, vb)
    grads = torch.autograd.grad(out.sum(), (q, k, v, u, vb))
    ref_in = as_float64([q, k, v, r, u, vb])
    ref_grads = torch.autograd.grad(naive.rel_attention(*ref_in).sum(),
                                    [ref_in[i] for i in (0, 1, 2, 4, 5)])
    for name, g, gr in zip(("q", "k", "v", "u", "vb"), grads, ref_grads):
        assert_close(f"d{name}", g, gr, 1e-4, 1e-4)


def test_kernel_fp16_error_within_twice_torch(triton_backend):
    inputs = make_inputs(2, 20, 11, 2, 64, dtype=torch.float16)
    check_half_precision(inputs)


def check_half_precision(inputs, slack=1e-3):
    """Kernel error vs fp64 at most 2x the reference's own error in the same dtype (+ slack)."""
    grad_out = torch.randn(inputs[0].shape, dtype=torch.float64, device=inputs[0].device)
    exact, exact_g = out_and_grads(naive.rel_attention, as_float64(inputs), grad_out)
    low_in = [x.detach().clone().requires_grad_() for x in inputs]
    low, low_g = out_and_grads(naive.rel_attention, low_in, grad_out)
    out, out_g = out_and_grads(rel_attention, inputs, grad_out)
    assert "RelAttentionFunction" in type(out.grad_fn).__name__, "the kernel did not run"
    for name, a, b, e in zip(("out",) + tuple(f"d{n}" for n in NAMES), (out,) + out_g,
                             (low,) + low_g, (exact,) + exact_g):
        err = (a.double() - e).abs().max().item()
        ref_err = (b.double() - e).abs().max().item()
        assert err <= 2 * ref_err + slack, (
            f"{name}: kernel max abs err {err:.3e} > 2 x reference's {ref_err:.3e} + {slack}"
        )


# ---------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("T,M", [(21, 14), (1, 45)])  # a segment, and a one-token step (ONE_QUERY)
def test_dropout_matches_reference_with_the_kernels_mask(triton_backend, monkeypatch, T, M):
    B, H, D, p, seed = 2, 2, 32, 0.3, 1234
    inputs = make_inputs(B, T, M, H, D)
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, M + T, seed, p, "cpu")
    visible = torch.arange(M + T)[None, :] <= torch.arange(T)[:, None] + M
    dropped = 1 - keep[..., visible].float().mean().item()
    assert abs(dropped - p) < 0.05, f"dropped fraction {dropped:.3f}, expected about {p}"

    check_dropout_against_mask(triton_backend, monkeypatch, inputs, keep, p, seed)


@pytest.mark.parametrize("seed", [5, 2**62 + 2**40 + 3])
def test_kernels_mask_is_the_torch_philox_mask(triton_backend, seed):
    # counter (b*H + h, i, j // 4, 0) under the 64-bit seed, word j % 4: an L that is no multiple of
    # 4 or of the tiles, both halves of a 64-bit seed in play, a threshold near the middle
    B, H, T, L, p = 2, 3, 21, 37, 0.45
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, L, seed, p, "cpu")
    ref = naive.rel_attention_dropout_keep(B, H, T, L, seed, p)
    assert keep.shape == ref.shape == (B, H, T, L)
    assert torch.equal(keep, ref)
    other = naive.rel_attention_dropout_keep(B, H, T, L, seed ^ (1 << 40), p)
    assert (other != ref).float().mean() > 0.3  # the high half of the seed matters


@pytest.mark.parametrize("base,add", [(7, 2**62 + 5), (2**63 - 3, 2**63 - 1), (-5, 3)])
def test_kernels_read_a_device_seed(triton_backend, base, add):
    # SEED[0] + add mod 2^64 (the last two wrap), read on the device: the mask of that value
    from tgan.ops.philox import DeviceSeed

    B, H, T, L, p = 2, 3, 5, 37, 0.45
    ds = DeviceSeed(torch.tensor([base]), add)
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, L, ds, p, "cpu")
    assert torch.equal(keep, naive.rel_attention_dropout_keep(B, H, T, L, ds.value(), p))


@pytest.mark.parametrize("T,M", [(21, 14), (1, 45)])
def test_dropout_with_a_device_seed_is_the_int_seeds(triton_backend, T, M):
    # forward and every gradient as with the int seed of the DeviceSeed's value; the base is read
    # at each call, so refilled in place it draws another mask
    from tgan.ops.philox import DeviceSeed

    inputs = make_inputs(2, T, M, 2, 32)
    grad_out = torch.randn(inputs[0].shape)
    ds = DeviceSeed(torch.tensor([1234]), 99)
    kw = dict(dropout_p=0.3)
    out_d, grads_d = out_and_grads(triton_backend.rel_attention, inputs, grad_out, dropout_seed=ds, **kw)
    out_i, grads_i = out_and_grads(triton_backend.rel_attention, inputs, grad_out, dropout_seed=1333,
                                   **kw)
    assert torch.equal(out_d, out_i)
    assert all(torch.equal(a, b) for a, b in zip(grads_d, grads_i))
    # refilled between the forward and its backward: autograd refuses, no silent other mask
    out = triton_backend.rel_attention(*inputs, dropout_seed=ds, **kw)
    ds.base.fill_(77)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    out_n = triton_backend.rel_attention(*inputs, dropout_seed=ds, **kw)
    assert torch.equal(out_n, triton_backend.rel_attention(*inputs, dropout_seed=176, **kw))
    assert not torch.equal(out_n, out_d)


def test_mask_beyond_the_grid_limit_is_a_clear_error(triton_backend):
    T = 16 * 65535 + 1  # one query tile more than grid axis 1 holds (16-row tiles here)
    with pytest.raises(ValueError, match=f"T={T}"):
        triton_backend.rel_attention_dropout_mask(1, 1, T, 4, 0, 0.5, "cpu")


def check_dropout_against_mask(triton_backend, monkeypatch, inputs, keep, p, seed):
    """Kernel with dropout vs the fp64 reference with F.dropout replaced by the mask ``keep``."""
    grad_out = torch.randn(inputs[0].shape, dtype=torch.float64)
    out, grads = out_and_grads(triton_backend.rel_attention, inputs, grad_out, dropout_p=p,
                               dropout_seed=seed)
    masked = SimpleNamespace(dropout=lambda x, p, training: x * keep.to(x.dtype) / (1 - p))
    monkeypatch.setattr(naive, "F", masked)
    ref, ref_grads = out_and_grads(naive.rel_attention, as_float64(inputs), grad_out, dropout_p=p)
    assert_close("out", out, ref, 1e-4, 1e-4)
    for name, g, gr in zip(NAMES, grads, ref_grads):
        assert_close(f"d{name}", g, gr, 1e-4, 1e-4)


def test_batch_beyond_the_grid_limit_runs_in_chunks_with_one_dropout_mask(triton_backend,
                                                                           monkeypatch):
    # B*H programs on grid axis 1 are capped at 65535 on CUDA; with the cap at 4, B = 5, H = 2
    # runs as three launches per pass, and dropout must still follow the global mask
    monkeypatch.setattr(triton_backend, "_MAX_GRID_YZ", 4)
    assert triton_backend._batch_chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    B, T, M, H, D, p, seed = 5, 19, 6, 2, 16, 0.3, 77
    inputs = make_inputs(B, T, M, H, D)
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, M + T, seed, p, "cpu")
    with monkeypatch.context() as m:
        check_dropout_against_mask(triton_backend, m, inputs, keep, p, seed)
    monkeypatch.setattr(triton_backend, "_MAX_GRID_YZ", 1)
    with pytest.raises(ValueError, match="2 heads exceed the grid limit"):
        triton_backend.rel_attention(*inputs)


def test_dropout_seed_repeats_and_varies(triton_backend):
    inputs = [x.detach() for x in make_inputs(1, 9, 4, 1, 16)]
    run = lambda **kw: rel_attention(*inputs, dropout_p=0.5, **kw)  # noqa: E731
    torch.manual_seed(7)
    a = run()
    torch.manual_seed(7)
    b = run()
    c = run()
    assert torch.equal(a, b), "the same torch seed must draw the same dropout mask"
    assert not torch.equal(a, c), "a new call must draw a new dropout mask"


# ------------------------------------------------------------------- fused backward (one pass)


@pytest.fixture
def fused_backward(triton_backend, monkeypatch):
    """TGAN_ATTN_BWD=fused, with every backward launch recorded: the fused kernel must run, and
    none of the three passes'."""
    monkeypatch.setenv("TGAN_ATTN_BWD", "fused")
    seen = record_launch_head_sizes(triton_backend, monkeypatch)
    yield triton_backend
    names = {name for name, _ in seen if "_bwd_" in name}
    assert names == {"rel_attention_bwd_fused_kernel"}, names


@pytest.mark.parametrize("B,T,M,H,D", [(2, 63, 37, 3, 50), (2, 40, 0, 2, 64), (2, 1, 37, 3, 50),
                                       (3, 16, 70, 2, 64)])
def test_fused_backward_matches_reference(fused_backward, B, T, M, H, D):
    # D = 50 (padded to 64 for segments) and 64; a segment with and without memory; one-token and
    # 16-token steps (the decode tiles); rows of r past the largest distance get no gradient
    grads = check_kernel(make_inputs(B, T, M, H, D, extra_r=3))
    assert grads[3][M + T:].abs().max() == 0


@pytest.mark.parametrize("bm,bn", [(16, 32), (32, 64)])
def test_fused_backward_other_tiles(fused_backward, monkeypatch, bm, bn):
    monkeypatch.setenv("TGAN_TRITON_CONFIG", f"{bm}x{bn}x4")
    check_kernel(make_inputs(2, 40, 19, 2, 50))


def test_fused_backward_with_dropout(fused_backward, monkeypatch):
    B, T, M, H, D, p, seed = 2, 21, 14, 2, 50, 0.3, 1234
    inputs = make_inputs(B, T, M, H, D)
    keep = fused_backward.rel_attention_dropout_mask(B, H, T, M + T, seed, p, "cpu")
    check_dropout_against_mask(fused_backward, monkeypatch, inputs, keep, p, seed)


def test_fused_backward_r_without_grad_skips_dr(fused_backward, monkeypatch):
    from tgan.ops.rel_attention import kernel as kern

    flags = []
    launch = kern.rel_attention_bwd_fused_kernel

    class Spy:
        def __getitem__(self, grid):
            def run(*args, **kw):
                flags.append(kw["COMPUTE_DR"])
                return launch[grid](*args, **kw)
            return run

    monkeypatch.setattr(kern, "rel_attention_bwd_fused_kernel", Spy())
    check_without_r_grad()
    assert flags == [False]


def test_fused_backward_fp16_error_within_twice_torch(fused_backward):
    # fp16 products, fp32 atomics: the fused backward's error stays within twice the reference's
    check_half_precision(make_inputs(2, 20, 11, 2, 64, dtype=torch.float16))


def test_backward_mode_bad_value(triton_backend, monkeypatch):
    monkeypatch.setenv("TGAN_ATTN_BWD", "atomic")
    with pytest.raises(ValueError, match="TGAN_ATTN_BWD must be one of"):
        triton_backend.backward_mode()


# ---------------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors(triton_backend):
    q, k, v, r, u, vb = [x.detach() for x in make_inputs(2, 5, 3, 2, 8)]
    with pytest.raises(ValueError, match="k must be"):
        rel_attention(q, k[:, :, :1], v, r, u, vb)
    with pytest.raises(ValueError, match="v must have"):
        rel_attention(q, k, v[:, :-1], r, u, vb)
    with pytest.raises(ValueError, match="r must be"):
        rel_attention(q, k, v, r[:7], u, vb)  # M+T = 8 rows needed
    with pytest.raises(ValueError, match="vb must be"):
        rel_attention(q, k, v, r, u, vb[:1])
    with pytest.raises(TypeError, match="dtype"):
        rel_attention(q, k.half(), v, r, u, vb)
    with pytest.raises(TypeError, match="unsupported dtype"):
        rel_attention(*(x.int() for x in (q, k, v, r, u, vb)))
    with pytest.raises(TypeError, match="not supported by the kernel"):
        rel_attention(*(x.double() for x in (q, k, v, r, u, vb)))
    with pytest.raises(ValueError, match="dropout_p"):
        rel_attention(q, k, v, r, u, vb, dropout_p=1.0)
    if interpret_mode():
        with pytest.raises(NotImplementedError, match="bfloat16"):
            rel_attention(*(x.bfloat16() for x in (q, k, v, r, u, vb)))


# ------------------------------------------------------------------------------ GPU, compiled


def _needs_compiled_kernels():
    if interpret_mode():
        pytest.skip("GPU tests check the compiled kernels: run them with TRITON_INTERPRET=0")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("T,M,D", [(256, 256, 64), (63, 128, 50), (1, 300, 128), (128, 0, 32)])
def test_gpu_low_precision_error_within_twice_torch(triton_backend, dtype, T, M, D):
    _needs_compiled_kernels()
    check_half_precision(make_inputs(2, T, M, 4, D, dtype=dtype, device="cuda"), slack=1e-5)


@pytest.mark.gpu
def test_gpu_fp32_and_dropout(triton_backend, monkeypatch):
    _needs_compiled_kernels()
    check_kernel(make_inputs(2, 200, 77, 3, 50, device="cuda"), atol=2e-4, rtol=2e-4)
    B, T, M, H, D, p, seed = 2, 130, 70, 2, 64, 0.1, 99
    inputs = make_inputs(B, T, M, H, D, device="cuda")
    keep = triton_backend.rel_attention_dropout_mask(B, H, T, M + T, seed, p, "cuda")
    grad_out = torch.randn(B, T, H, D, dtype=torch.float64, device="cuda")
    out, grads = out_and_grads(triton_backend.rel_attention, inputs, grad_out, dropout_p=p,
                               dropout_seed=seed)
    monkeypatch.setattr(naive, "F", SimpleNamespace(
        dropout=lambda x, p, training: x * keep.to(x.dtype) / (1 - p)))
    ref, ref_grads = out_and_grads(naive.rel_attention, as_float64(inputs), grad_out, dropout_p=p)
    assert_close("out", out, ref, 2e-4, 2e-4)
    for name, g, gr in zip(NAMES, grads, ref_grads):
        assert_close(f"d{name}", g, gr, 2e-4, 2e-4)
