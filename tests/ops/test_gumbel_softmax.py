"""gumbel_softmax_st / sample_logits / gumbel_noise: Triton kernels (interpreter on the CPU) vs the
references in tgan.ops.gumbel_softmax.naive, the straight-through gradient vs autograd, the noise generator, the
sampled distributions, and argument checks."""
import math

import pytest
import torch

from tgan.ops import gumbel_noise, gumbel_softmax_st, sample_logits
from tgan.ops.gumbel_softmax import naive
from tgan.ops.gumbel_softmax import triton as gs


def assert_close(actual, expected, atol, rtol, name="tensor"):
    """torch.testing-style check that reports the max abs / rel error and where it occurs."""
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs()
    bad = err > atol + rtol * expected.abs()
    if bad.any():
        flat = int(err.argmax())
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape))
        rel = (err / expected.abs().clamp_min(1e-12)).max().item()
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{err.numel()} elements off (atol={atol}, rtol={rtol}); "
            f"max abs err {err.max().item():.3e} at {where} (actual {actual.flatten()[flat].item():.6g}, "
            f"expected {expected.flatten()[flat].item():.6g}); max rel err {rel:.3e}"
        )


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "triton")


def st_autograd(logits, beta, noise, embedding=None):
    """The textbook straight-through estimator, written out: y_hard - y_soft.detach() + y_soft."""
    z = logits.float() + noise
    y_soft = torch.softmax(beta * z, dim=-1)
    y_hard = torch.nn.functional.one_hot(z.argmax(-1), logits.shape[-1]).float()
    y = y_hard - y_soft.detach() + y_soft
    return y if embedding is None else y @ embedding.float()


def chi2_pvalue(counts, probs, min_expected=5.0):
    """Pearson chi-square p-value of counts against probs, low-expectation bins pooled."""
    n = counts.sum().item()
    order = torch.argsort(probs, descending=True)
    c, p = counts[order].double(), probs[order].double()
    keep = p * n >= min_expected
    c = torch.cat([c[keep], c[~keep].sum().reshape(1)])
    p = torch.cat([p[keep], p[~keep].sum().reshape(1)])
    if p[-1] * n < min_expected:  # pool a too-small tail into the last kept bin
        c = torch.cat([c[:-2], c[-2:].sum().reshape(1)])
        p = torch.cat([p[:-2], p[-2:].sum().reshape(1)])
    stat = ((c - n * p) ** 2 / (n * p)).sum()
    df = len(c) - 1
    return torch.special.gammaincc(torch.tensor(df / 2.0), stat / 2.0).item()


# ---------------------------------------------------------------------------------------------
# Noise generator
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,seed,offset", [
    ((7, 310), 0, 0), ((3, 5, 390), 2**63 + 12345, 2**40 + 3), ((2, 13), 2**32 - 1, 1),
])
def test_noise_kernel_matches_reference(triton_backend, shape, seed, offset):
    g = gumbel_noise(shape, seed, offset)
    ref = naive.gumbel_noise(shape, seed, offset)
    # Same Philox bits and the same map; only the libm log may differ by an ulp.
    assert_close(g, ref, atol=1e-5, rtol=1e-5, name="gumbel_noise")
    assert g.dtype == torch.float32 and g.shape == shape


def test_noise_transform_accurate_in_the_tails(triton_backend):
    check_noise_tails("cpu")


@pytest.mark.gpu
def test_noise_transform_accurate_in_the_tails_on_cuda(monkeypatch):
    # the compiled map (fma contraction, sm_90 instructions), not the interpreter's numpy
    monkeypatch.setenv("TGAN_BACKEND", "auto")
    check_noise_tails("cuda")


def check_noise_tails(device):
    # every uint32 input region: the extremes (g's top tail lives at tiny u), both sides of the
    # switch from log1p's exact -u to the rounded 1 - u (u = 1 - sqrt(1/2), x ~ 1257966796),
    # and a random sample of the rest; against float64 -ln(-ln1p(-u))
    switch = int((1 - 0.5 ** 0.5) * 2**32)
    special = [0, 1, 2, 3, 7, 2**8, 2**16, 2**20, 2**24, 2**28, 2**29, 2**30, 2**31,
               2**32 - 2**8, 2**32 - 2, 2**32 - 1] + list(range(switch - 2048, switch + 2048, 64))
    drawn = torch.randint(0, 2**32, (200_000,), dtype=torch.int64).tolist()
    xs = torch.tensor(special + list(range(0, 2**22, 97)) + drawn, dtype=torch.int64)
    g = gs.gumbel_from_bits((xs - (xs >= 2**31).long() * 2**32).to(torch.int32).to(device))
    g = g.double().cpu()
    # u as the kernels and the reference form it (uint32 -> fp32, + 0.5, * 2^-32, in fp32); the
    # map from u on is what is checked
    u = ((xs.to(torch.float32) + 0.5) * 2.0**-32).clamp(max=1.0 - 2.0**-24).double()
    exact = -torch.log(-torch.log1p(-u))
    # 1e-6 plus an ulp of g (|g| reaches 22.9, where an fp32 ulp is 1.9e-6)
    err = (g - exact).abs() / (1e-6 + 2.0**-23 * exact.abs())
    worst = int(err.argmax())
    assert err.max() < 1.0, f"error {err.max():.3g} x (1e-6 + ulp) at bits {int(xs[worst])}"
    assert abs(g[0].item() - 22.8739) < 1e-3 and abs(g[special.index(2**32 - 1)].item() + 2.8115) < 1e-3


def test_noise_does_not_depend_on_tiling(triton_backend, monkeypatch):
    g = gumbel_noise((5, 310), 11, 2)
    monkeypatch.setattr(gs, "_MAX_BLOCK_V", 64)
    monkeypatch.setattr(gs, "_TILE_INTERPRET", 128)
    assert torch.equal(gumbel_noise((5, 310), 11, 2), g)


def test_noise_is_gumbel():
    g = naive.gumbel_noise((100, 1000), seed=3).flatten().double()
    n = g.numel()
    # Kolmogorov-Smirnov against exp(-exp(-x)); the 1e-3 critical value is 1.95 / sqrt(n).
    xs = g.sort().values
    cdf = torch.exp(-torch.exp(-xs))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    assert d < 1.95 / math.sqrt(n), f"KS distance {d:.4g}"
    assert abs(g.mean().item() - 0.5772156649) < 0.01  # Euler-Mascheroni
    assert abs(g.var().item() - math.pi**2 / 6) < 0.04
    assert torch.isfinite(g).all() and g.min() > -3.0 and g.max() < 23.0


def test_streams_same_seed_same_noise_offsets_independent(triton_backend):
    a = gumbel_noise((16, 390), 5, 0)
    assert torch.equal(a, gumbel_noise((16, 390), 5, 0))
    for other in (gumbel_noise((16, 390), 5, 1), gumbel_noise((16, 390), 6, 0),
                  gumbel_noise((16, 390), 5, 2**32)):
        corr = torch.corrcoef(torch.stack([a.flatten(), other.flatten()]))[0, 1].item()
        assert abs(corr) < 0.04, corr  # 6240 pairs: sd of the correlation ~0.013
        assert not torch.isclose(a, other).any()
    # An offset is a separate counter word, not a shift of the element stream.
    b = gumbel_noise((16, 390), 5, 1)
    assert not torch.isclose(a.flatten()[1:], b.flatten()[:-1]).any()


# ---------------------------------------------------------------------------------------------
# gumbel_softmax_st: forward and straight-through backward
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("R,V", [(7, 310), (63, 390), (5, 1000)])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_st_matches_autograd_explicit_noise(triton_backend, R, V, beta):
    logits = torch.randn(R, V, requires_grad=True)
    noise = naive.gumbel_noise((R, V), seed=R + V)
    y, index = gumbel_softmax_st(logits, beta, noise=noise)
    y_ref = st_autograd(logits, beta, noise)
    assert torch.equal(index, (logits.detach() + noise).argmax(-1))
    assert torch.equal(y, torch.nn.functional.one_hot(index, V).float())
    assert_close(y, y_ref, atol=1e-6, rtol=0, name="y_st")
    grad = torch.randn(R, V)
    (d,) = torch.autograd.grad(y, logits, grad)
    (d_ref,) = torch.autograd.grad(y_ref, logits, grad)
    # beta * z rounds at ~1e-7 * |beta * z| in fp32: the tolerance grows with beta.
    tol = dict(atol=2e-6 * beta, rtol=1e-4)
    assert_close(d, d_ref, name="d logits", **tol)
    # And the reference op agrees with the written-out estimator.
    yn, _ = naive.gumbel_softmax_st(logits, beta, noise=noise)
    assert_close(torch.autograd.grad(yn, logits, grad)[0], d_ref, name="naive", **tol)


@pytest.mark.parametrize("beta", [1.0, 30.0])
def test_st_gradient_error_at_most_reference_error(triton_backend, beta):
    # Against float64 truth, the kernel's error is within 2x that of autograd in fp32.
    R, V = 16, 390
    logits = torch.randn(R, V, requires_grad=True)
    noise = naive.gumbel_noise((R, V), seed=4)
    grad = torch.randn(R, V)
    y, _ = gumbel_softmax_st(logits, beta, noise=noise)
    (d,) = torch.autograd.grad(y, logits, grad)
    (d_ref,) = torch.autograd.grad(st_autograd(logits, beta, noise), logits, grad)
    # The op is defined on z = logits + g rounded to fp32; the truth is taken from that z.
    s = torch.softmax(beta * (logits.detach() + noise).double(), -1)
    g = grad.double()
    truth = beta * s * (g - (g * s).sum(-1, keepdim=True))
    err, err_ref = (d - truth).abs().max().item(), (d_ref - truth).abs().max().item()
    assert err <= 2 * err_ref + 1e-7, f"kernel error {err:.3g} vs fp32 autograd {err_ref:.3g}"


@pytest.mark.parametrize("R,V,E", [(7, 310, 37), (20, 390, 64)])
def test_st_embedding_matches_autograd(triton_backend, R, V, E):
    logits = torch.randn(R, V, requires_grad=True)
    emb = (torch.randn(V, E) * 0.1).requires_grad_()
    noise = naive.gumbel_noise((R, V), seed=1)
    e, index = gumbel_softmax_st(logits, 2.0, noise=noise, embedding=emb)
    e_ref = st_autograd(logits, 2.0, noise, emb)
    assert torch.equal(e, emb.detach()[index])  # the forward is an exact row lookup
    assert_close(e, e_ref, atol=1e-6, rtol=0, name="e")
    grad = torch.randn(R, E)
    d, d_emb = torch.autograd.grad(e, (logits, emb), grad)
    d_ref, d_emb_ref = torch.autograd.grad(e_ref, (logits, emb), grad)
    assert_close(d, d_ref, atol=1e-6, rtol=1e-4, name="d logits")
    assert_close(d_emb, d_emb_ref, atol=1e-5, rtol=1e-5, name="d embedding")
    # The tied embedding does get a gradient: rows of the sampled tokens only.
    touched = d_emb.abs().sum(1) > 0
    assert torch.equal(touched, torch.bincount(index, minlength=V) > 0)


@pytest.mark.parametrize("gpu_tiles", [False, True])
def test_st_seeded_matches_reference_on_kernel_noise(triton_backend, monkeypatch, gpu_tiles):
    if gpu_tiles:  # CUDA-sized tiles: 2048 elements (the 512-wide kernels' 4 rows; 8 rows of
        # the word-tile kernels, whose CUDA tile is twice that: test_st_word_tiles_cover_...)
        monkeypatch.setattr(gs, "_TILE_INTERPRET", gs._TILE)
    R, V = 63, 390
    logits = torch.randn(R, V, requires_grad=True)
    y, index = gumbel_softmax_st(logits, 1.7, seed=1234, offset=77)
    noise = gumbel_noise((R, V), 1234, 77)  # the kernel's own noise, materialised
    y_ref, index_ref = naive.gumbel_softmax_st(logits, 1.7, noise=noise)
    assert torch.equal(index, index_ref)
    grad = torch.randn(R, V)
    assert_close(torch.autograd.grad(y, logits, grad)[0], torch.autograd.grad(y_ref, logits, grad)[0],
                 atol=1e-6, rtol=1e-5, name="d logits (noise regenerated in backward)")


@pytest.mark.parametrize("V,chunks", [
    (1, (1, 1, 0, 0)), (5, (2, 1, 0, 0)), (254, (64, 1, 0, 0)), (256, (64, 1, 0, 0)),
    (257, (64, 1, 1, 0)), (310, (64, 1, 8, 8)), (390, (64, 1, 32, 2)), (4100, (1024, 1, 1, 0)),
])
def test_st_word_tiles_cover_every_column(triton_backend, monkeypatch, V, chunks):
    # The one-hot passes cover a row's cdiv(V, 4) Philox groups with chunks of NG_A (NUM_CHUNKS
    # times), NG_B and NG_C groups; each chunk holds four word tiles (columns 4g + w). At the GPU
    # tile size (16 rows of 64 groups), with pad rows in the last program (R = 37), every column
    # of every chunk must be loaded, drawn, written and differentiated as the reference does.
    monkeypatch.setattr(gs, "_TILE_INTERPRET", gs._WORD_TILE)
    R = 37
    block_r, ng_a, num_chunks, ng_b, ng_c, *_ = gs._word_config(R, V, on_cuda=False)
    assert (ng_a, num_chunks, ng_b, ng_c) == chunks
    assert num_chunks * ng_a + ng_b + ng_c >= (V + 3) // 4
    logits = torch.randn(R, V, requires_grad=True)
    # the largest logit of some rows in the last group, of others in the first
    with torch.no_grad():
        logits[::3, -1] += 30.0
        logits[1::3, 0] += 30.0
    y, index = gumbel_softmax_st(logits, 0.7, seed=42, offset=3)
    noise = gumbel_noise((R, V), 42, 3)
    y_ref, index_ref = naive.gumbel_softmax_st(logits, 0.7, noise=noise)
    assert torch.equal(index, index_ref)
    assert torch.equal(y, y_ref.detach())
    grad = torch.randn(R, V)
    expected = torch.autograd.grad(y_ref, logits, grad)[0]
    # d logits = beta * p * (g - <g, p>): the row reduction <g, p> sums V float32 products in an
    # order that differs between kernel and reference (and between CPUs), so its rounding error,
    # and the gradient's, grows like sqrt(V): 1e-6 up to 256 columns, 4e-6 at 4100.
    atol = 1e-6 * max(1.0, (V / 256) ** 0.5)
    # still tight enough that a column left out (its gradient 0) or taken from the wrong place fails
    # (at V = 1 the gradient is 0 everywhere: p = 1 and g - <g, p> = 0)
    assert V == 1 or (expected.abs().amax(dim=0) > 2 * atol + 1e-4 * expected.abs().amax(dim=0)).all()
    assert_close(torch.autograd.grad(y, logits, grad)[0], expected, atol=atol, rtol=1e-4, name=f"d logits V={V}")


def test_st_backends_agree_for_a_seed(monkeypatch):
    logits = torch.randn(2, 3, 310)
    monkeypatch.setenv("TGAN_BACKEND", "torch")
    _, idx_torch = gumbel_softmax_st(logits, 1.0, seed=99)
    monkeypatch.setenv("TGAN_BACKEND", "triton")
    _, idx_triton = gumbel_softmax_st(logits, 1.0, seed=99)
    assert idx_triton.shape == (2, 3) and torch.equal(idx_triton, idx_torch)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("base,add", [(11, 2**62 + 5), (-3, 5)])  # -3 + 5 wraps past 2^64
def test_ops_take_a_device_seed(monkeypatch, backend, base, add):
    # a DeviceSeed gives what the int seed of its value gives: samples, gradients, noise, tokens;
    # refilling its base (in place, as a captured graph's replay would) gives new noise
    from tgan.ops.philox import DeviceSeed

    monkeypatch.setenv("TGAN_BACKEND", backend)
    logits = torch.randn(6, 390, requires_grad=True)
    ds = DeviceSeed(torch.tensor([base]), add)
    value = ds.value()
    g = torch.randn(6, 390)
    y_d, i_d = gumbel_softmax_st(logits, 2.0, seed=ds, offset=3)
    (grad_d,) = torch.autograd.grad(y_d, logits, g)
    y_i, i_i = gumbel_softmax_st(logits, 2.0, seed=value, offset=3)
    (grad_i,) = torch.autograd.grad(y_i, logits, g)
    assert torch.equal(i_d, i_i) and torch.equal(y_d, y_i) and torch.equal(grad_d, grad_i)
    assert torch.equal(gumbel_noise((6, 390), ds, 2), gumbel_noise((6, 390), value, 2))
    x = logits.detach()
    assert torch.equal(sample_logits(x, top_k=50, seed=ds, offset=1),
                       sample_logits(x, top_k=50, seed=value, offset=1))
    ds.base.fill_(base + 1)
    assert torch.equal(gumbel_noise((6, 390), ds, 2), gumbel_noise((6, 390), ds.value(), 2))
    assert not torch.equal(gumbel_noise((6, 390), ds, 2), gumbel_noise((6, 390), value, 2))


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_ops_take_an_offset_tensor(monkeypatch, backend):
    # an int64 tensor of one element, read on the device, gives what the int offset of its value
    # gives (with an int seed or a DeviceSeed): a decode step captured in a graph advances it
    from tgan.ops.philox import DeviceSeed

    monkeypatch.setenv("TGAN_BACKEND", backend)
    logits = torch.randn(5, 390, requires_grad=True)
    off = torch.tensor([2**40 + 7])
    g = torch.randn(5, 390)
    for seed in (123, DeviceSeed(torch.tensor([123]))):
        y_t, i_t = gumbel_softmax_st(logits, 1.5, seed=seed, offset=off)
        (grad_t,) = torch.autograd.grad(y_t, logits, g)
        y_i, i_i = gumbel_softmax_st(logits, 1.5, seed=123, offset=2**40 + 7)
        (grad_i,) = torch.autograd.grad(y_i, logits, g)
        assert torch.equal(i_t, i_i) and torch.equal(grad_t, grad_i)
        x = logits.detach()
        assert torch.equal(sample_logits(x, top_p=0.9, seed=seed, offset=off),
                           sample_logits(x, top_p=0.9, seed=123, offset=2**40 + 7))
        assert torch.equal(gumbel_noise((5, 390), seed, off), gumbel_noise((5, 390), 123, 2**40 + 7))
    y, _ = gumbel_softmax_st(logits, 1.5, seed=123, offset=off)
    off.add_(1)  # advanced before the backward
    if backend == "triton":  # the kernel regenerates the noise: autograd refuses
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
    else:  # the reference keeps its noise: nothing to regenerate
        y.sum().backward()
    assert not torch.equal(gumbel_noise((5, 390), 123, off), gumbel_noise((5, 390), 123, 2**40 + 7))
    with pytest.raises(TypeError, match="sample_logits: an offset tensor must be int64 of one element"):
        sample_logits(logits.detach(), seed=1, offset=torch.tensor([1, 2]))


def test_a_bad_device_seed_is_named(triton_backend):
    from tgan.ops.philox import DeviceSeed

    logits = torch.randn(2, 310)
    with pytest.raises(TypeError, match="gumbel_softmax_st: a DeviceSeed's base must be an int64"):
        gumbel_softmax_st(logits, 1.0, seed=DeviceSeed(torch.zeros(1, dtype=torch.int32)))
    with pytest.raises(ValueError, match="sample_logits: the DeviceSeed's base is on meta"):
        sample_logits(logits, seed=DeviceSeed(torch.zeros(1, dtype=torch.int64, device="meta")))


def test_st_seed_drawn_from_torch_generator(triton_backend):
    logits = torch.randn(4, 310)
    torch.manual_seed(5)
    _, a = gumbel_softmax_st(logits, 1.0)
    torch.manual_seed(5)
    _, b = gumbel_softmax_st(logits, 1.0)
    assert torch.equal(a, b)
    _, c = gumbel_softmax_st(logits, 1.0, generator=torch.Generator().manual_seed(5))
    _, d = gumbel_softmax_st(logits, 1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(c, d)


def test_st_chunked_rows(triton_backend, monkeypatch):
    # Rows wider than one tile: online argmax / softmax over 5 column chunks.
    R, V, E = 6, 310, 24
    logits = torch.randn(R, V, requires_grad=True)
    emb = torch.randn(V, E, requires_grad=True)
    noise = naive.gumbel_noise((R, V), seed=8)
    monkeypatch.setattr(gs, "_MAX_BLOCK_V", 64)
    monkeypatch.setattr(gs, "_MAX_BLOCK_V_EMB", 64)
    monkeypatch.setattr(gs, "_TILE_INTERPRET", 256)  # several row blocks too
    for embedding, n_out in ((None, V), (emb, E)):
        for kw in ({"noise": noise}, {"seed": 8}):
            y, index = gumbel_softmax_st(logits, 1.5, embedding=embedding, **kw)
            y_ref = st_autograd(logits, 1.5, noise, embedding)
            assert torch.equal(index, (logits.detach() + noise).argmax(-1))
            grad = torch.randn(R, n_out)
            inputs = (logits,) if embedding is None else (logits, emb)
            for a, b, nm in zip(torch.autograd.grad(y, inputs, grad),
                                torch.autograd.grad(y_ref, inputs, grad), ("d logits", "d emb")):
                assert_close(a, b, atol=1e-5, rtol=1e-4, name=f"{nm} chunked {list(kw)}")


def test_st_multi_block_vocabulary(triton_backend):
    # V = 5000 > the 4096-wide tile: two chunks at the default configuration.
    logits = torch.randn(3, 5000, requires_grad=True)
    y, index = gumbel_softmax_st(logits, 1.0, seed=3)
    noise = gumbel_noise((3, 5000), 3)
    y_ref, index_ref = naive.gumbel_softmax_st(logits, 1.0, noise=noise)
    assert torch.equal(index, index_ref)
    grad = torch.randn(3, 5000)
    assert_close(torch.autograd.grad(y, logits, grad)[0], torch.autograd.grad(y_ref, logits, grad)[0],
                 atol=1e-6, rtol=1e-4, name="d logits V=5000")


def test_st_shapes_views_and_empty(triton_backend):
    # [B, T, V] logits, and the strided view logits[:, -1] a rollout step produces.
    full = torch.randn(3, 4, 310, requires_grad=True)
    y, index = gumbel_softmax_st(full, 1.0, seed=1)
    assert y.shape == (3, 4, 310) and index.shape == (3, 4) and index.dtype == torch.int64
    last = full[:, -1]
    y, index = gumbel_softmax_st(last, 1.0, seed=1)
    noise = gumbel_noise((3, 310), 1)
    assert torch.equal(index, (last.detach() + noise).argmax(-1))
    (d,) = torch.autograd.grad(y, full, torch.randn(3, 310))
    assert d[:, :-1].abs().sum() == 0 and d[:, -1].abs().sum() > 0
    y, index = gumbel_softmax_st(torch.randn(0, 310), 1.0, seed=1)
    assert y.shape == (0, 310) and index.shape == (0,)


def test_st_saves_no_vocab_sized_tensor_but_the_logits(triton_backend):
    R, V = 8, 310
    logits = torch.randn(R, V, requires_grad=True)
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _ = gumbel_softmax_st(logits, 1.0, seed=1)
    big = [s for s in saved if math.prod(s[0]) >= R * V]
    assert big == [((R, V), logits.data_ptr())], saved


def test_st_masked_tokens(triton_backend):
    logits = torch.randn(5, 310, requires_grad=True)
    masked = logits.detach().clone()
    masked[:, :100] = float("-inf")
    masked.requires_grad_()
    y, index = gumbel_softmax_st(masked, 2.0, seed=4)
    assert (index >= 100).all()
    (d,) = torch.autograd.grad(y, masked, torch.randn(5, 310))
    assert torch.isfinite(d).all() and d[:, :100].abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_st_low_precision(triton_backend, dtype):
    R, V, E = 7, 390, 40
    logits = torch.randn(R, V).to(dtype).requires_grad_()
    emb = (torch.randn(V, E) * 0.1).to(dtype).requires_grad_()
    noise = naive.gumbel_noise((R, V), seed=2)
    y, index = gumbel_softmax_st(logits, 2.0, noise=noise)
    y_ref, index_ref = naive.gumbel_softmax_st(logits, 2.0, noise=noise)
    assert y.dtype == dtype and torch.equal(index, index_ref) and torch.equal(y, y_ref)
    grad = torch.randn(R, V).to(dtype)
    # Both compute in fp32 and round once to the storage dtype: within one ulp of each other.
    assert_close(torch.autograd.grad(y, logits, grad)[0], torch.autograd.grad(y_ref, logits, grad)[0],
                 atol=1e-3, rtol=1e-2, name=f"d logits {dtype}")
    e, _ = gumbel_softmax_st(logits, 2.0, noise=noise, embedding=emb)
    e_ref, _ = naive.gumbel_softmax_st(logits, 2.0, noise=noise, embedding=emb)
    assert e.dtype == dtype and torch.equal(e, e_ref)
    grad = torch.randn(R, E).to(dtype)
    for a, b, nm in zip(torch.autograd.grad(e, (logits, emb), grad),
                        torch.autograd.grad(e_ref, (logits, emb), grad), ("d logits", "d emb")):
        assert_close(a, b, atol=1e-3, rtol=1e-2, name=f"{nm} embedding {dtype}")


# ---------------------------------------------------------------------------------------------
# Distributions (the kernels themselves, one logits row broadcast over many rows)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("V,n", [(310, 4096), (390, 4096), (5000, 512)])
def test_st_samples_follow_softmax(triton_backend, V, n):
    torch.manual_seed(V)
    row = torch.randn(V) * (1.0 if V < 1000 else 4.0)  # peaked at V = 5000: few pooled bins
    _, index = gumbel_softmax_st(row.expand(n, V), 1.0, seed=2024)
    p = chi2_pvalue(torch.bincount(index, minlength=V), torch.softmax(row.double(), 0))
    assert p > 1e-3, f"chi-square p-value {p:.3g}"


def test_sample_logits_distribution(triton_backend):
    torch.manual_seed(1)
    V, n, k, top_p, temp = 390, 2048, 12, 0.9, 0.8
    row = torch.randn(V) * 1.5
    idx = sample_logits(row.expand(n, V), temperature=temp, top_k=k, top_p=top_p, seed=7)
    x = row.double()
    keep = x >= x.topk(k).values[-1]
    probs = torch.softmax((x / temp).masked_fill(~keep, float("-inf")), 0)
    srt = probs.sort(descending=True).values
    n_keep = int((srt.cumsum(0) - srt < top_p).sum())
    probs = probs.masked_fill(probs < srt[n_keep - 1], 0.0)
    probs = probs / probs.sum()
    counts = torch.bincount(idx, minlength=V)
    assert (counts[probs == 0] == 0).all(), "sampled a token outside top-k / top-p"
    p = chi2_pvalue(counts[probs > 0], probs[probs > 0])
    assert p > 1e-3, f"chi-square p-value {p:.3g}"


# ---------------------------------------------------------------------------------------------
# sample_logits vs its reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("R,V,temperature,top_k,top_p", [
    (7, 310, 1.0, 0, 1.0), (63, 390, 0.95, 32, 1.0), (7, 310, 1.0, 0, 0.9), (63, 390, 0.7, 20, 0.8),
    (7, 1000, 1.3, 1, 1.0), (7, 390, 1.0, 500, 0.5),
])
def test_sample_logits_matches_reference(triton_backend, R, V, temperature, top_k, top_p):
    logits = torch.randn(R, V) * 2
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    out = sample_logits(logits, seed=31, **kw)
    assert out.shape == (R,) and out.dtype == torch.int64
    assert torch.equal(out, naive.sample_logits(logits, noise=gumbel_noise((R, V), 31), **kw))
    if top_k == 1:
        assert torch.equal(out, logits.argmax(-1))


def test_sample_logits_explicit_noise_and_batch_dims(triton_backend):
    logits = torch.randn(2, 3, 310)
    noise = naive.gumbel_noise((2, 3, 310), 5)
    out = sample_logits(logits, top_k=16, top_p=0.9, noise=noise)
    assert out.shape == (2, 3)
    assert torch.equal(out, naive.sample_logits(logits, top_k=16, top_p=0.9, noise=noise))


def test_sample_logits_greedy_ties_masks_chunks(triton_backend, monkeypatch):
    logits = torch.randn(7, 310)
    logits[:, 50] = logits[:, 200] = 10.0  # tie: the first index wins, like torch.argmax
    assert (sample_logits(logits, temperature=0.0) == 50).all()
    logits[:, 50] = logits[:, 200] = float("-inf")
    idx = sample_logits(logits, seed=3)
    assert ((idx != 50) & (idx != 200)).all()
    monkeypatch.setattr(gs, "_MAX_BLOCK_V", 64)
    for kw in ({"top_k": 5}, {"top_p": 0.7, "temperature": 0.9}, {}):
        assert torch.equal(sample_logits(logits, seed=3, **kw),
                           naive.sample_logits(logits, seed=3, **kw)), kw


def test_sample_logits_same_seed_same_samples(triton_backend):
    logits = torch.randn(63, 310)
    a = sample_logits(logits, top_k=32, seed=10)
    assert torch.equal(a, sample_logits(logits, top_k=32, seed=10))
    assert not torch.equal(a, sample_logits(logits, top_k=32, seed=10, offset=1))


# ---------------------------------------------------------------------------------------------
# Dispatch and argument checks
# ---------------------------------------------------------------------------------------------

def test_dispatch_routes(monkeypatch):
    logits = torch.randn(3, 310)

    def boom(*a, **k):
        raise AssertionError("wrong route")

    monkeypatch.setenv("TGAN_BACKEND", "triton")
    with monkeypatch.context() as m:
        m.setattr(naive, "gumbel_softmax_st", boom)
        m.setattr(naive, "sample_logits", boom)
        gumbel_softmax_st(logits, 1.0, seed=1)
        sample_logits(logits, seed=1)
    for backend in ("torch", "auto"):  # auto = the reference for CPU tensors
        monkeypatch.setenv("TGAN_BACKEND", backend)
        with monkeypatch.context() as m:
            m.setattr(gs, "gumbel_softmax_fwd", boom)
            m.setattr(gs, "sample_logits_fwd", boom)
            m.setattr(gs, "gumbel_noise_fwd", boom)
            y, _ = gumbel_softmax_st(logits, 1.0, seed=1)
            sample_logits(logits, seed=1)
            gumbel_noise((3, 310), 1)
            assert torch.equal(y, naive.gumbel_softmax_st(logits, 1.0, seed=1)[0])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_arguments(monkeypatch, backend):
    monkeypatch.setenv("TGAN_BACKEND", backend)
    x = torch.randn(4, 310)
    cases = [
        (ValueError, "beta", lambda: gumbel_softmax_st(x, 0.0)),
        (ValueError, "beta", lambda: gumbel_softmax_st(x, -1.0)),
        (ValueError, "beta", lambda: gumbel_softmax_st(x, float("nan"))),
        (TypeError, "beta", lambda: gumbel_softmax_st(x, torch.tensor(1.0))),
        (ValueError, "V >= 1", lambda: gumbel_softmax_st(torch.randn(4, 0), 1.0)),
        (TypeError, "logits", lambda: gumbel_softmax_st(x.long(), 1.0)),
        (ValueError, "noise", lambda: gumbel_softmax_st(x, 1.0, noise=torch.randn(4, 309))),
        (ValueError, "noise or seed", lambda: gumbel_softmax_st(x, 1.0, noise=torch.randn(4, 310), seed=1)),
        (ValueError, "seed", lambda: gumbel_softmax_st(x, 1.0, seed=-1)),
        (ValueError, "seed", lambda: gumbel_softmax_st(x, 1.0, seed=2**64)),
        (ValueError, "offset", lambda: gumbel_softmax_st(x, 1.0, seed=1, offset=-2)),
        (TypeError, "seed", lambda: gumbel_softmax_st(x, 1.0, seed=1.5)),
        (ValueError, "embedding", lambda: gumbel_softmax_st(x, 1.0, embedding=torch.randn(309, 8))),
        (ValueError, "temperature", lambda: sample_logits(x, temperature=-0.1)),
        (ValueError, "top_k", lambda: sample_logits(x, top_k=-1)),
        (ValueError, "top_p", lambda: sample_logits(x, top_p=0.0)),
        (ValueError, "top_p", lambda: sample_logits(x, top_p=1.5)),
        (ValueError, "noise", lambda: sample_logits(x, noise=torch.randn(310))),
        (ValueError, "shape", lambda: gumbel_noise((4, 0), 1)),
        # int32 row indices in the kernels: 2^31 rows (an expanded view, no memory) are refused
        (ValueError, "fewer than 2147352576 rows",
         lambda: gumbel_softmax_st(torch.zeros(1, 16).expand(2**31, 16), 1.0, seed=1)),
    ]
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[2, 7] = bad
        cases.append((ValueError, "row 2", lambda y=y: gumbel_softmax_st(y, 1.0)))
        cases.append((ValueError, "row 2", lambda y=y: sample_logits(y)))
    dead = x.clone()
    dead[1] = float("-inf")
    cases.append((ValueError, "row 1", lambda: gumbel_softmax_st(dead, 1.0)))
    for exc, words, fn in cases:
        with pytest.raises(exc, match=words):
            fn()


def test_triton_backend_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        gumbel_softmax_st(torch.randn(2, 310), 1.0)


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_kernels_match_reference(monkeypatch, dtype):
    monkeypatch.setenv("TGAN_BACKEND", "auto")
    R, V, E = 4096, 390, 500
    logits = torch.randn(R, V, device="cuda").to(dtype).requires_grad_()
    emb = (torch.randn(V, E, device="cuda") * 0.1).to(dtype).requires_grad_()
    noise = gumbel_noise((R, V), 17, device="cuda")
    assert_close(noise, naive.gumbel_noise((R, V), 17, device="cuda"), 1e-4, 1e-5, "noise")
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-3, rtol=2e-2)
    for embedding in (None, emb):
        y, index = gumbel_softmax_st(logits, 3.0, seed=17, embedding=embedding)
        y_ref, index_ref = naive.gumbel_softmax_st(logits, 3.0, noise=noise, embedding=embedding)
        assert torch.equal(index, index_ref) and torch.equal(y, y_ref)
        grad = torch.randn_like(y)
        inputs = (logits,) if embedding is None else (logits, emb)
        for a, b in zip(torch.autograd.grad(y, inputs, grad), torch.autograd.grad(y_ref, inputs, grad)):
            assert_close(a, b, name=f"cuda grad {dtype}", **tol)
    x = logits.detach()
    for kw in ({}, {"top_k": 32, "temperature": 0.95}, {"top_p": 0.9}):
        assert torch.equal(sample_logits(x, seed=17, **kw), naive.sample_logits(x, noise=noise, **kw))
