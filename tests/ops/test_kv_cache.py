"""KVCache: the C++ and pure-PyTorch caches against the naive torch.cat cache (views, every
gradient, sliding windows, growth, reuse across resets), their errors, and opcheck of the C++ ops."""
import pytest
import torch

from tgan.ops import kv_cache
from tgan.ops.rel_attention import naive
from tgan.ops.kv_cache import KVCache, cpp_available

NEEDS_EXT = pytest.mark.skipif(not cpp_available(), reason="the C++ extension tgan._C is not built")
BUFFERED = ["torch", pytest.param("cpp", marks=NEEDS_EXT)]



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Decode steps are tiny ops: intra-op threads only add synchronisation (on a busy 2-core
    machine the toy decoder below took 1.6 s with 2 threads, 0.03 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Odd sizes on purpose.
B, H, D, NL, DIN, M = 3, 3, 5, 2, 7, 4


def assert_close(actual, expected, name, atol=1e-5, rtol=1e-5):
    """allclose that says which tensor differs and by how much."""
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        err = (actual - expected).abs().max().item()
        raise AssertionError(f"{name}: max abs error {err:.3e} (atol {atol}, rtol {rtol}), shapes "
                             f"{tuple(actual.shape)} vs {tuple(expected.shape)}")


class Toy:
    """A stack of NL attention layers decoded token by token through a KVCache: keys/values are
    projected from the layer input (as the generator does), memory keys/values are written first."""

    def __init__(self, device="cpu"):
        g = torch.Generator().manual_seed(1)
        self.w_kv = [torch.randn(DIN, 2 * H * D, generator=g).mul_(0.5).requires_grad_() for _ in range(NL)]
        self.w_q = [torch.randn(DIN, H * D, generator=g).mul_(0.5).requires_grad_() for _ in range(NL)]
        self.w_o = [torch.randn(H * D, DIN, generator=g).mul_(0.3).requires_grad_() for _ in range(NL)]
        self.r = torch.randn(64, H, D, generator=g).requires_grad_()
        self.u, self.vb = torch.randn(H, D, generator=g), torch.randn(H, D, generator=g)
        self.mem = torch.randn(B, M, DIN, generator=g).requires_grad_()
        self.xs = torch.randn(B, 19, DIN, generator=g)
        if device != "cpu":
            for name in ("w_kv", "w_q", "w_o"):
                setattr(self, name, [w.detach().to(device).requires_grad_() for w in getattr(self, name)])
            self.r = self.r.detach().to(device).requires_grad_()
            self.mem = self.mem.detach().to(device).requires_grad_()
            self.u, self.vb, self.xs = self.u.to(device), self.vb.to(device), self.xs.to(device)

    def params(self):
        return self.w_kv + self.w_q + self.w_o + [self.r, self.mem]

    def kv(self, layer, h):
        return (h @ self.w_kv[layer]).view(h.shape[0], h.shape[1], 2, H, D).unbind(2)

    def run(self, cache, window=None, steps=19):
        """Returns the outputs [B, steps, DIN]; the cache holds the memory and every step."""
        for layer in range(NL):
            cache.append(layer, *self.kv(layer, self.mem))
        outs = []
        for t in range(steps):
            h = self.xs[:, t:t + 1]
            for layer in range(NL):
                k, v = cache.append(layer, *self.kv(layer, h), window)
                q = (h @ self.w_q[layer]).view(B, 1, H, D)
                a = naive.rel_attention(q, k, v, self.r, self.u, self.vb)
                h = torch.tanh(h + a.reshape(B, 1, H * D) @ self.w_o[layer])
            outs.append(h)
        return torch.cat(outs, dim=1)

    def grads(self, cache, window=None, steps=19):
        for p in self.params():
            p.grad = None
        out = self.run(cache, window, steps)
        (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
        return out.detach(), [p.grad.clone() for p in self.params()]


def _cache(impl, capacity=M + 19, grow=False, batch=B, device="cpu"):
    return KVCache(NL, batch, capacity, H, D, impl=impl, grow=grow, device=device)


@pytest.mark.parametrize("impl", BUFFERED)
@pytest.mark.parametrize("window,capacity,grow", [(None, M + 19, False), (6, M + 19, False), (6, 9, True)])
def test_outputs_and_every_gradient_match_the_cat_cache(impl, window, capacity, grow):
    toy = Toy()
    ref_out, ref_grads = toy.grads(_cache("cat"), window)
    out, grads = toy.grads(_cache(impl, capacity, grow), window)
    assert_close(out, ref_out, "outputs")
    names = [f"w_kv{i}" for i in range(NL)] + [f"w_q{i}" for i in range(NL)] + [f"w_o{i}" for i in range(NL)]
    for name, g, rg in zip(names + ["r", "mem"], grads, ref_grads):
        assert_close(g, rg, f"grad {name}")


@pytest.mark.gpu
@pytest.mark.parametrize("impl", BUFFERED)
def test_cuda_tensors_match_the_cat_cache(impl):
    toy = Toy("cuda")
    ref_out, ref_grads = toy.grads(_cache("cat", device="cuda"), 6)
    out, grads = toy.grads(_cache(impl, 9, True, device="cuda"), 6)
    assert_close(out, ref_out, "outputs")
    for i, (g, rg) in enumerate(zip(grads, ref_grads)):
        assert_close(g, rg, f"grad {i}")
    k = torch.randn(B, 1, H, D)
    with pytest.raises(ValueError, match="k is on cpu but the cache is on cuda"):
        _cache(impl, device="cuda").append(0, k, k)


@pytest.mark.parametrize("impl", BUFFERED)
def test_views_are_the_window_in_position_order(impl):
    toy = Toy()
    cache, ref = _cache(impl), _cache("cat")
    with torch.no_grad():
        for layer in range(NL):
            cache.append(layer, *toy.kv(layer, toy.mem))
            ref.append(layer, *toy.kv(layer, toy.mem))
        for t in range(7):
            h = toy.xs[:, t:t + 1]
            k, v = cache.append(0, *toy.kv(0, h), 5)
            rk, rv = ref.append(0, *toy.kv(0, h), 5)
            assert k.shape == (B, min(M + t, 5) + 1, H, D) and torch.equal(k, rk) and torch.equal(v, rv)
    assert cache.length(0) == 6 and cache.length(1) == M
    assert torch.equal(cache.keys(0), ref.keys(0)) and torch.equal(cache.values(1), ref.values(1))


@pytest.mark.parametrize("impl", BUFFERED)
def test_sliding_window_without_grad_moves_to_the_front_and_never_grows(impl):
    toy = Toy()
    cache, ref = KVCache(1, B, 12, H, D, impl=impl, grow=True), KVCache(1, B, 1, H, D, impl="cat")
    first = cache._c.buffer_id
    with torch.no_grad():
        for t in range(40):
            h = toy.xs[:, t % 19: t % 19 + 1]
            k, _ = cache.append(0, *toy.kv(0, h), 5)
            rk, _ = ref.append(0, *toy.kv(0, h), 5)
            assert torch.equal(k, rk), t
    assert cache.capacity == 12 and cache._c.buffer_id == first


@pytest.mark.parametrize("impl", BUFFERED)
def test_retain_graph_second_backward_gives_the_same_gradient(impl):
    toy = Toy()
    out = toy.run(_cache(impl), window=None, steps=6)
    loss = out.square().sum()
    (g1,) = torch.autograd.grad(loss, [toy.w_kv[0]], retain_graph=True)
    (g2,) = torch.autograd.grad(loss, [toy.w_kv[0]])
    assert_close(g2, g1, "second backward")


@pytest.mark.parametrize("impl", BUFFERED)
def test_reset_reuses_buffers_only_once_the_graph_is_back_propagated(impl):
    toy = Toy()
    cache = _cache(impl)
    first = cache._c.buffer_id
    toy.run(cache, steps=3).sum().backward()
    assert cache.pending == 0
    cache.reset()
    assert cache._c.buffer_id == first and cache.length(0) == 0

    # A graph still pending: reset gives the cache new buffers and the old graph stays correct.
    out = toy.run(cache, steps=5)
    assert cache.pending > 0
    cache.reset()
    assert cache._c.buffer_id != first
    toy.run(cache, steps=2)  # writes into the new buffers must not disturb the old graph
    got = torch.autograd.grad(out.sum(), toy.params())
    ref = torch.autograd.grad(toy.run(_cache("cat"), steps=5).sum(), toy.params())
    for i, (a, b) in enumerate(zip(got, ref)):
        assert_close(a, b, f"grad {i} of a graph that outlived a reset")


@pytest.mark.parametrize("impl", BUFFERED)
def test_backward_through_overwritten_positions_raises(impl):
    toy = Toy()
    cache = _cache(impl)
    loss = toy.run(cache, steps=3).sum()
    torch.autograd.grad(loss, toy.params(), retain_graph=True)  # settles every node: pending == 0
    cache.reset()  # so the buffers are reused in place
    toy.run(cache, steps=3)
    with pytest.raises(RuntimeError, match="overwritten"):
        torch.autograd.grad(loss, toy.params())


@pytest.mark.parametrize("impl", BUFFERED)
def test_capacity_overflow_raises(impl):
    toy = Toy()
    cache = _cache(impl, capacity=M + 2)
    out = toy.run(cache, steps=2)
    with pytest.raises(RuntimeError, match=r"capacity exceeded.*capacity 6.*still reads them"):
        cache.append(0, *toy.kv(0, toy.xs[:, :1]), 3)
    del out
    with torch.no_grad(), pytest.raises(RuntimeError, match="capacity exceeded"):
        cache.append(1, *toy.kv(1, toy.xs[:, :1]))  # no window to slide


@pytest.mark.parametrize("impl", BUFFERED + ["cat"])
def test_wrong_device_dtype_shape_and_layer_raise(impl):
    cache = _cache(impl)
    k = torch.randn(B, 1, H, D)
    with pytest.raises(ValueError, match=r"k is on meta but the cache is on cpu"):
        cache.append(0, k.to("meta"), k)
    with pytest.raises(TypeError, match=r"v has dtype .*(Double|float64).* but the cache holds"):
        cache.append(0, k, k.double())
    with pytest.raises(ValueError, match=r"k must be \[B=3, n, H=3, D=5\], got shape \[3, 1, 4, 5\]"):
        cache.append(0, torch.randn(B, 1, H + 1, D), torch.randn(B, 1, H + 1, D))
    with pytest.raises(IndexError, match=r"layer must be in \[0, 2\), got 2"):
        cache.append(NL, k, k)


def test_constructor_errors_and_missing_extension(monkeypatch):
    with pytest.raises(ValueError, match="impl must be one of"):
        KVCache(1, 1, 4, 1, 1, impl="cuda")
    with pytest.raises(ValueError, match="capacity must be a positive int, got 0"):
        KVCache(1, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        KVCache(1, 1, 4, 1, 1, dtype=torch.long)
    monkeypatch.setattr(kv_cache, "_C", None)
    monkeypatch.setattr(kv_cache, "_WARNED_NO_EXT", False)
    with pytest.warns(RuntimeWarning, match=r"tgan\._C did not import"):
        assert KVCache(1, 1, 4, 1, 1).impl == "torch"
    needle = r"impl='cpp' needs the C\+\+ extension.*pip install --no-build-isolation -e \."
    with pytest.raises(RuntimeError, match=needle):
        KVCache(1, 1, 4, 1, 1, impl="cpp")


@NEEDS_EXT
def test_auto_uses_the_extension_when_built():
    assert KVCache(1, 1, 4, 1, 1).impl == "cpp"


@NEEDS_EXT
@pytest.mark.parametrize("op", ["kv_write", "kv_grad_take"])
def test_opcheck(op):
    Bo, Ho, C, Do, n = 2, 3, 7, 5, 2
    buf = [torch.randn(Bo, Ho, C, Do) for _ in range(2)]
    if op == "kv_write":
        args = (*buf, torch.randn(Bo, n, Ho, Do), torch.randn(Bo, n, Ho, Do), 3)
    else:
        args = (*buf, torch.randn(Bo, 5, Ho, Do), None, 1, 4, n)
    # The ops carry no autograd formula of their own (KVCache's autograd node drives them).
    torch.library.opcheck(getattr(torch.ops.tgan, op).default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@NEEDS_EXT
def test_cpp_ops_match_their_definition():
    kc, vc = torch.zeros(2, 3, 7, 5), torch.zeros(2, 3, 7, 5)
    k, v = torch.randn(2, 2, 3, 5), torch.randn(2, 2, 3, 5)
    torch.ops.tgan.kv_write(kc, vc, k, v, 3)
    assert torch.equal(kc[:, :, 3:5].transpose(1, 2), k) and torch.equal(vc[:, :, 3:5].transpose(1, 2), v)
    g = torch.randn(2, 4, 3, 5)
    expect = kc.clone()
    expect[:, :, 1:5] += g.transpose(1, 2)
    gk, gv = torch.ops.tgan.kv_grad_take(kc, vc, g, None, 1, 3, 2)
    assert torch.equal(gk, expect[:, :, 3:5].transpose(1, 2)) and torch.equal(gv, v)
    assert not kc[:, :, 3:5].any() and not vc[:, :, 3:5].any()
    with pytest.raises(RuntimeError, match=r"capacity exceeded: writing 2 position\(s\) at 6 in a cache of capacity 7"):
        torch.ops.tgan.kv_write(kc, vc, k, v, 6)
