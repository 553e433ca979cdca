"""Philox4x32-10: the torch twin against Random123's published vectors, and the Triton function
(interpreter on the CPU) against the torch twin, so that the one set of constants serves both."""
import pytest
import torch

from tgan.ops import philox
from tgan.ops.philox import philox4x32

# Random123's published Philox4x32-10 test vectors: (counter, key) -> output.
KNOWN = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "triton")


@pytest.mark.parametrize("counter,key,expected", KNOWN)
def test_torch_twin_known_answers(counter, key, expected):
    out = philox4x32(*[torch.tensor([c], dtype=torch.int64) for c in counter], *key)
    assert tuple(int(w) for w in out) == expected


try:  # the Triton function, called from a kernel the interpreter runs on CPU tensors
    import triton
    import triton.language as tl

    from tgan.ops.philox.kernel import philox4x32 as philox_tl

    @triton.jit
    def _philox_kernel(c_ptr, out_ptr, k0, k1, N: tl.constexpr):
        i = tl.arange(0, N)
        c0 = tl.load(c_ptr + 4 * i).to(tl.uint32)
        c1 = tl.load(c_ptr + 4 * i + 1).to(tl.uint32)
        c2 = tl.load(c_ptr + 4 * i + 2).to(tl.uint32)
        c3 = tl.load(c_ptr + 4 * i + 3).to(tl.uint32)
        r0, r1, r2, r3 = philox_tl(k0.to(tl.uint32), k1.to(tl.uint32), c0, c1, c2, c3)
        tl.store(out_ptr + 4 * i, r0.to(tl.int64))
        tl.store(out_ptr + 4 * i + 1, r1.to(tl.int64))
        tl.store(out_ptr + 4 * i + 2, r2.to(tl.int64))
        tl.store(out_ptr + 4 * i + 3, r3.to(tl.int64))
except ImportError:  # pragma: no cover - triton is a dependency
    _philox_kernel = None


def test_triton_function_matches_torch_twin(triton_backend):
    if _philox_kernel is None:
        pytest.skip("triton is not installed")
    g = torch.Generator().manual_seed(5)
    counters = torch.randint(0, 2**32, (8, 4), generator=g, dtype=torch.int64)
    counters[0] = torch.tensor(KNOWN[1][0])
    for k0, k1 in (KNOWN[1][1], (7, 2**32 - 1)):
        out = torch.zeros_like(counters)
        _philox_kernel[(1,)](counters, out, k0, k1, N=8)
        ref = torch.stack(philox4x32(*counters.unbind(1), k0, k1), dim=1)
        assert torch.equal(out, ref), (k0, k1)
        if (k0, k1) == KNOWN[1][1]:
            assert tuple(int(w) for w in out[0]) == KNOWN[1][2]
    assert philox.PHILOX_M0 == 0xD2511F53


def test_seed_stream_draws_once_and_repeats_for_the_same_generator_state(monkeypatch):
    from tgan.ops.philox import draw_seed, naive, seed_stream

    draws = []
    host_draw = naive._host_draw
    monkeypatch.setattr(naive, "_host_draw", lambda g: draws.append(g) or host_draw(g))
    g = torch.Generator().manual_seed(5)
    with seed_stream(g):
        a = [draw_seed(g) for _ in range(6)] + [draw_seed()]  # the stream's generator, or None
    assert len(draws) == 1 and len(set(a)) == 7 and all(0 <= s < 2**63 for s in a)
    g.manual_seed(5)
    with seed_stream(g):
        assert [draw_seed(g) for _ in range(7)] == a
    # another generator inside the block draws from itself; outside the block every call draws
    other = torch.Generator().manual_seed(1)
    with seed_stream(g):
        draw_seed(other)
    draw_seed()
    assert len(draws) == 5


def test_seed_stream_on_a_device_hands_the_ops_device_seeds_and_draws_nothing_on_the_host(monkeypatch):
    from tgan.ops.philox import DeviceSeed, draw_op_seed, draw_seed, naive, seed_stream

    draws = []
    host_draw = naive._host_draw
    monkeypatch.setattr(naive, "_host_draw", lambda g: draws.append(g) or host_draw(g))
    torch.manual_seed(3)
    with seed_stream(device="cpu") as stream:
        seeds = [draw_op_seed() for _ in range(5)]
    assert draws == []  # the base is drawn on the device, as a tensor
    assert all(isinstance(s, DeviceSeed) and s.base is stream.base.base for s in seeds)
    base = int(stream.base.base)
    # the kernels' values: base + i·W (the add kept below 2^63), as the int stream spaces its seeds
    assert [s.value() for s in seeds] == [(base + (i * naive._WEYL64 & (2**63 - 1))) % 2**64
                                          for i in range(5)]
    assert [int(s.as_tensor()) % 2**64 for s in seeds] == [s.value() for s in seeds]
    torch.manual_seed(3)
    with seed_stream(device="cpu") as again:
        assert int(again.base.base) == base  # torch.manual_seed repeats it
        assert isinstance(draw_seed(), int)  # draw_seed is not served on a device: it draws
    assert len(draws) == 1


def test_device_seed_checks_name_the_op():
    from tgan.ops.philox import DeviceSeed, check_device_seed

    good = torch.zeros(1, dtype=torch.int64)
    check_device_seed("op", DeviceSeed(good, 5), torch.device("cpu"))
    with pytest.raises(TypeError, match="op: a DeviceSeed's base must be an int64 tensor"):
        check_device_seed("op", DeviceSeed(torch.zeros(1, dtype=torch.int32)), torch.device("cpu"))
    with pytest.raises(TypeError, match="of 2 elements"):
        check_device_seed("op", DeviceSeed(torch.zeros(2, dtype=torch.int64)), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"op: a DeviceSeed's add must be an int in \[0, 2\*\*63\)"):
        check_device_seed("op", DeviceSeed(good, 2**63), torch.device("cpu"))
    with pytest.raises(ValueError, match="op: the DeviceSeed's base is on cpu"):
        check_device_seed("op", DeviceSeed(good), torch.device("meta"))


@pytest.mark.gpu
def test_a_captured_step_draws_new_noise_once_its_device_seed_is_refilled():
    # a CUDA graph of dropout attention and a straight-through Gumbel sample, seeded by one
    # DeviceSeed: each replay after refilling the base equals the eager step at the new value
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from tgan.ops import gumbel_softmax_st
    from tgan.ops.philox import DeviceSeed
    from tgan.ops.rel_attention import triton as attn

    dev = "cuda"
    B, T, M, H, D, V = 2, 1, 63, 2, 64, 390
    L = M + T
    q, k, v, r = (torch.randn(s, device=dev) for s in ((B, T, H, D), (B, L, H, D), (B, L, H, D),
                                                       (L, H, D)))
    u, vb = torch.randn(H, D, device=dev), torch.randn(H, D, device=dev)
    logits = torch.randn(B, V, device=dev)
    ds = DeviceSeed(torch.tensor([11], device=dev))

    def step(attn_seed, noise_seed):
        o = attn.rel_attention(q, k, v, r, u, vb, dropout_p=0.3, dropout_seed=attn_seed)
        return o, gumbel_softmax_st(logits, 1.0, seed=noise_seed)[1]

    step(ds, ds.split(1))  # compiles outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o_g, idx_g = step(ds, ds.split(1))
    outs = []
    for value in (11, 12, 2**40 + 3):
        ds.base.fill_(value)
        graph.replay()
        o_e, idx_e = step(value, (value + ds.split(1).add) % 2**64)
        assert torch.equal(o_g, o_e) and torch.equal(idx_g, idx_e), value
        outs.append(o_g.clone())
    assert not torch.equal(outs[0], outs[1])
