"""StaticDecoder (TGAN_DECODE=static / graph): the ring cache's tokens equal the eager decoder's for
a seed, on the torch path and on the Triton path (here under the interpreter: the eager decoder's
sampling kernel, reading its seed and offset on the device), and its token step is one graph for
torch.compile: no graph break, no recompile as the ring advances or from one call to the next."""
import pytest
import torch

import tgan.sampling as sampling
from tgan.model import GeneratorConfig, TransformerXL
from tgan.sampling import StaticDecoder, generate_tokens

V = 29


def _gen(d_head=8, context=12):
    torch.manual_seed(0)
    return TransformerXL(GeneratorConfig(vocab_size=V, n_layer=2, d_model=2 * d_head, n_head=2, d_head=d_head,
                                         d_inner=32, tgt_len=8, mem_len=8, eval_mem_len=context, dropout=0.1,
                                         attn_dropout=0.1))


def _count_static_steps(monkeypatch) -> list:
    calls = [0]
    step = StaticDecoder.next_token

    def counted(self, x):
        calls[0] += 1
        return step(self, x)
    monkeypatch.setattr(StaticDecoder, "next_token", counted)
    return calls


@pytest.mark.parametrize("kw", [dict(), dict(top_p=0.9), dict(top_k=0, temperature=1.3),
                                dict(primer=True, eos_id=3)])
def test_static_decode_gives_the_eager_tokens(monkeypatch, kw):
    g = _gen()
    if kw.pop("primer", False):
        kw["primer"] = torch.randint(2, V, (3, 5), generator=torch.Generator().manual_seed(2))
    calls = _count_static_steps(monkeypatch)
    eager = generate_tokens(g, 3, 60, seed=5, decode="eager", **kw)
    assert calls[0] == 0
    static = generate_tokens(g, 3, 60, seed=5, decode="static", **kw)
    assert calls[0] >= 60 - 13 - 2  # every token once the window of 12 + 1 is full
    assert torch.equal(eager, static)
    # and the noise depends on the seed (the comparison is not between two constant outputs)
    assert not torch.equal(eager, generate_tokens(g, 3, 60, seed=6, decode="static", **kw))


def test_static_decode_on_the_triton_path_gives_the_eager_tokens(monkeypatch):
    pytest.importorskip("triton")
    from tgan.ops.gumbel_softmax import triton as gt

    monkeypatch.setenv("TGAN_BACKEND", "triton")  # the interpreter: the sampling and attention kernels
    g = _gen(d_head=16, context=20)
    eager = generate_tokens(g, 2, 40, seed=5, decode="eager")
    monkeypatch.setenv("TGAN_DECODE", "static")
    calls = _count_static_steps(monkeypatch)
    kernel_calls = []
    on_device = gt.sample_logits_on_device
    monkeypatch.setattr(gt, "sample_logits_on_device",
                        lambda *a: kernel_calls.append(a) or on_device(*a))
    assert torch.equal(eager, generate_tokens(g, 2, 40, seed=5))
    assert calls[0] > 0
    # the eager decoder's kernel samples, its seed and offset read from the decoder's buffers: at
    # every step, and once at the switch (the token from the last eager step's logits)
    assert len(kernel_calls) == calls[0] + 1


def test_graph_decode_on_the_triton_path_gives_the_eager_tokens(monkeypatch):
    # the compiled step keeps the sampling kernel as one op (inductor on the CPU, about 20 s)
    pytest.importorskip("triton")
    monkeypatch.setenv("TGAN_BACKEND", "triton")
    g = _gen(d_head=16, context=20)
    torch._dynamo.reset()
    eager = generate_tokens(g, 2, 40, seed=5, decode="eager")
    assert torch.equal(eager, generate_tokens(g, 2, 40, seed=5, decode="graph"))


def _full_state(g, context, B=3):
    g.eval()
    state = g.init_state(None, batch_size=B, capacity=2 * context + 2)
    x = torch.zeros(B, dtype=torch.long)
    with torch.no_grad():
        for _ in range(context + 2):
            g.step(x, state, max_context=context)
    return state, x


def test_static_decode_one_specialization_and_no_graph_break():
    g = _gen()
    state, x = _full_state(g, 12)
    dec = StaticDecoder(g, state, 12, 0.95, 8, 0.9, seed=1, offset=0)
    explained = torch._dynamo.explain(dec._next_token)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    compiles = []

    def backend(gm, inputs):
        compiles.append(gm)
        return gm.forward
    torch._dynamo.reset()
    step = torch.compile(dec._next_token, backend=backend, fullgraph=True)
    with torch.no_grad():
        ids = [step(x) for _ in range(2 * 13 + 3)]  # around the ring twice: slot, offset advance
    assert len(compiles) == 1
    steps = 1 + 2 * 13 + 3  # explain ran one step too
    assert int(dec.slot) == (12 + steps) % 13 and int(dec.offset) == steps
    assert len({tuple(i.tolist()) for i in ids}) > 1


def test_static_decoder_needs_a_full_window_and_decode_mode_is_checked(monkeypatch):
    g = _gen()
    state, _ = _full_state(g, 12)
    with pytest.raises(ValueError, match="context \\+ 1 = 16"):
        StaticDecoder(g, state, 15, 0.95, 8, 0.9, seed=1, offset=0)
    monkeypatch.setenv("TGAN_DECODE", "cuda-graph")
    with pytest.raises(ValueError, match="TGAN_DECODE must be one of"):
        generate_tokens(g, 1, 5, seed=1)
    with pytest.raises(ValueError, match="decode must be one of"):
        sampling.decode_mode("fast")


def test_graph_decode_compiles_the_step_once_and_gives_the_eager_tokens():
    # inductor on the CPU (about 30 s); on a GPU the same call captures a CUDA graph per token.
    # A second call (another seed, another primer) reuses the decoder and its compiled step.
    from torch._dynamo.utils import counters

    g = _gen()
    torch._dynamo.reset()
    counters.clear()
    for seed in (5, 6):
        eager = generate_tokens(g, 3, 40, seed=seed, decode="eager")
        assert torch.equal(eager, generate_tokens(g, 3, 40, seed=seed, decode="graph"))
    assert counters["stats"]["unique_graphs"] == 1


def test_static_decoders_are_reused_per_model_and_die_with_it():
    import gc

    g = _gen()
    generate_tokens(g, 3, 30, seed=1, decode="static")
    (dec,) = sampling._DECODERS[g].values()
    generate_tokens(g, 3, 30, seed=2, decode="static", primer=torch.randint(2, V, (3, 4)))
    assert list(sampling._DECODERS[g].values()) == [dec]  # reloaded in place, same buffers
    generate_tokens(g, 2, 30, seed=2, decode="static")  # another batch: another decoder
    assert len(sampling._DECODERS[g]) == 2
    del g, dec
    gc.collect()
    assert len(sampling._DECODERS) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_decode_on_the_gpu_gives_the_static_and_the_eager_tokens():
    # one CUDA graph per token against the same step uncompiled and against the eager decoder: the
    # same sampling kernel at the same seed and offsets. The attention reads the ring's keys in
    # another order than the sliding window (sums in another order): a near-tie may still part
    # them, so the check is on the first 32 tokens after the switch, where that is unlikely.
    g = _gen(d_head=32, context=64).cuda()
    graph = generate_tokens(g, 4, 200, seed=5, decode="graph", device="cuda")
    assert torch.equal(graph, generate_tokens(g, 4, 200, seed=5, decode="static", device="cuda"))
    eager = generate_tokens(g, 4, 200, seed=5, decode="eager", device="cuda")
    assert torch.equal(graph[:, :98], eager[:, :98])


def test_static_step_logits_equal_the_sliding_window_step():
    # the ring's order of keys and of relative embeddings against TransformerXL.step, around the
    # ring more than once (weights scaled up so that the relative term moves the logits)
    torch.manual_seed(0)
    g = TransformerXL(GeneratorConfig(vocab_size=V, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32,
                                      tgt_len=8, mem_len=8, eval_mem_len=12, init_std=0.3))
    state, x = _full_state(g, 12, B=2)
    dec = StaticDecoder(g, state, 12, 1.0, 0, 1.0, seed=1, offset=0)
    ids = torch.randint(2, V, (30, 2), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for t in range(30):
            ref = g.step(ids[t], state, max_context=12)
            got = dec._step(ids[t])
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=f"step {t}")
