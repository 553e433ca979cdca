import pytest
import torch

from tgan.gan.losses import RSGAN
from saved_memory import SavedTensorBytes
from tgan.gan.rollout import generator_adversarial_step, rollout_segments, sample_fakes
from tgan.model import BertConfig, BertDiscriminator, GeneratorConfig, TransformerXL

V = 29


def _models():
    g = TransformerXL(GeneratorConfig(vocab_size=V, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32,
                                      tgt_len=8, mem_len=8, eval_mem_len=16, dropout=0.0, attn_dropout=0.0))
    d = BertDiscriminator(BertConfig(vocab_size=V + 1, n_layer=1, d_model=16, n_head=2, d_inner=32, max_len=32,
                                     dropout=0.0, attn_dropout=0.0))
    return g, d


def _peak(rollout_len, segment_len=8, grad_segments=1):
    torch.manual_seed(0)
    g, d = _models()
    real = torch.randint(2, V, (2, 4 + rollout_len))
    with SavedTensorBytes() as sb:
        generator_adversarial_step(g, d, RSGAN(), real, 4, rollout_len, segment_len, beta=2.0,
                                   grad_segments=grad_segments)
    return sb.peak


def test_peak_memory_does_not_grow_with_rollout_length():
    short, long = _peak(16), _peak(64)
    assert short > 0
    assert long <= short * 1.05, (short, long)
    # and it does grow with the segment length (the measurement is not blind)
    assert _peak(32, segment_len=16) > short * 1.3


def test_every_segment_gets_gradient_and_memory_is_detached_between_segments():
    torch.manual_seed(0)
    g, d = _models()
    real = torch.randint(2, V, (2, 3 + 24))
    carried = []
    init_state = g.init_state

    def spy(mems, **kw):  # the memory each segment starts from
        carried.append(mems)
        return init_state(mems, **kw)

    g.init_state = spy
    seen = []
    for s, fake, real_seg in rollout_segments(g, real, 3, 24, 8, beta=1.0):
        assert fake.shape == (2, 8, V) and real_seg.shape == (2, 8)
        assert torch.equal(real_seg, real[:, 3 + 8 * s: 3 + 8 * (s + 1)])
        assert torch.allclose(fake.sum(-1), torch.ones(2, 8))  # straight-through one-hots
        # the memory this segment started from is detached: no graph into the previous segment
        # (whose graph the backward below frees)
        assert all(not m.requires_grad and m.grad_fn is None for m in carried[s])
        g.zero_grad()
        d(fake).sum().backward()
        seen.append(g.embed.weight.grad.abs().sum().item())
    assert len(seen) == 3 and all(v > 0 for v in seen)
    assert len(carried) == 3 and all(m.shape[1] == 8 for mems in carried[1:] for m in mems)


def test_generator_step_moves_parameters_and_fakes_have_no_grad():
    torch.manual_seed(0)
    g, d = _models()
    real = torch.randint(2, V, (2, 21))
    before = [p.detach().clone() for p in g.parameters()]
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    loss = generator_adversarial_step(g, d, RSGAN(), real, 5, 16, 8, beta=3.0)
    assert torch.isfinite(torch.tensor(loss))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    opt.step()
    moved = [not torch.equal(b, p) for b, p in zip(before, g.parameters())]
    assert all(moved), moved  # every generator parameter moves, attention's u and v included
    fakes = sample_fakes(g, real, 5, 16, 8, beta=3.0)
    assert fakes.shape == (2, 16, V) and not fakes.requires_grad


def test_bad_lengths_raise():
    g, d = _models()
    real = torch.randint(2, V, (2, 20))
    with pytest.raises(ValueError, match="multiple of segment_len"):
        list(rollout_segments(g, real, 4, 12, 8, beta=1.0))
    with pytest.raises(ValueError, match="needs prefix_len"):
        list(rollout_segments(g, real, 5, 16, 8, beta=1.0))
    with pytest.raises(ValueError, match="prefix_len must be"):
        list(rollout_segments(g, real, 0, 16, 8, beta=1.0))


def test_disc_inputs_put_the_shared_prefix_before_the_first_segment_only():
    from tgan.gan.rollout import disc_inputs

    real = torch.randint(2, V, (2, 3 + 16))
    fake = torch.softmax(torch.randn(2, 16, V), -1)
    r0, f0 = disc_inputs(real, fake[:, :8], 0, 3, 8, True)
    assert torch.equal(r0, real[:, :11]) and f0.shape == (2, 11, V)
    assert torch.equal(f0[:, :3].argmax(-1), real[:, :3]) and torch.equal(f0[:, 3:], fake[:, :8])
    r1, f1 = disc_inputs(real, fake[:, 8:], 1, 3, 8, True)
    assert torch.equal(r1, real[:, 11:19]) and f1 is not None and torch.equal(f1, fake[:, 8:])
    r0, f0 = disc_inputs(real, fake[:, :8], 0, 3, 8, False)
    assert torch.equal(r0, real[:, 3:11]) and torch.equal(f0, fake[:, :8])


def test_gradient_through_memory_spans_groups_of_segments_with_bounded_memory():
    # grad_segments=2: one backward per two segments; peak memory bounded by the group, not the rollout
    two = _peak(16, grad_segments=2)
    assert _peak(64, grad_segments=2) <= two * 1.05
    assert two > 1.3 * _peak(16, grad_segments=1)  # the group's graphs are alive together

    def run(grad_segments):
        torch.manual_seed(0)
        g, d = _models()
        carried, init_state = [], g.init_state
        g.init_state = lambda mems, **kw: (carried.append(mems), init_state(mems, **kw))[1]
        real = torch.randint(2, V, (2, 4 + 32))
        generator_adversarial_step(g, d, RSGAN(), real, 4, 32, 8, beta=2.0, grad_segments=grad_segments)
        return [p.grad.clone() for p in g.parameters()], [mems[0].requires_grad for mems in carried]

    g1, carried1 = run(1)
    g2, carried2 = run(2)
    assert carried1 == [False] * 4
    assert carried2 == [False, True, False, True]  # graph kept into the group's second segment only
    # same samples, same losses: the difference is the gradient through the memory
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g1, g2))


@pytest.mark.parametrize("grad_segments,frozen", [(1, False), (2, False), (1, True)])
def test_weight_gradients_summed_once_per_segment_equal_per_token_autograd(grad_segments, frozen):
    # SegmentLinears (one product per weight and segment) against plain autograd (one per token),
    # with dropout on: the same samples, losses and every parameter's gradient (a frozen weight
    # and a frozen bias beside a trainable weight get none)
    def run(segment_grads):
        torch.manual_seed(3)
        cfg = GeneratorConfig(vocab_size=V, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32, tgt_len=8,
                              mem_len=8, eval_mem_len=16, dropout=0.1, attn_dropout=0.1)
        g, d = TransformerXL(cfg), _models()[1]
        g.segment_grads = segment_grads
        if frozen:
            g.attn[0].q_net.weight.requires_grad_(False)
            g.ff[1].net[0].bias.requires_grad_(False)
        real = torch.randint(2, V, (3, 4 + 32))
        loss = generator_adversarial_step(g, d, RSGAN(), real, 4, 32, 8, beta=2.0, grad_segments=grad_segments)
        return loss, {n: p.grad.clone() for n, p in g.named_parameters() if p.grad is not None}

    loss_seg, seg = run(True)
    loss_ref, ref = run(False)
    assert loss_seg == pytest.approx(loss_ref, rel=1e-6)
    assert seg.keys() == ref.keys() and len(ref) == len(list(_models()[0].parameters())) - 2 * frozen
    for name in ref:
        torch.testing.assert_close(seg[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(ref[n].abs().sum() > 0 for n in ("embed.weight", "ff.0.net.0.weight", "attn.1.q_net.weight"))


def test_segment_linears_hold_one_product_per_weight_and_segment():
    # the backward of a segment's token steps runs one mm per weight, not one per token
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountMM(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ == "mm":
                CountMM.n += 1
            return func(*args, **(kwargs or {}))

    def mms(segment_grads, steps):
        torch.manual_seed(0)
        g = _models()[0]
        g.segment_grads = segment_grads
        state = g.init_state(None, batch_size=2, capacity=steps + 1)
        x = torch.nn.functional.one_hot(torch.tensor([3, 4]), V).float()
        out = 0
        for _ in range(steps):
            logits = g.step(x, state)
            out = out + logits.sum()
            x = torch.softmax(logits, -1)
        CountMM.n = 0
        with CountMM():
            out.backward()
        return CountMM.n

    # plain autograd: per token, each linear's input and weight products (+ the tied embedding's)
    assert mms(False, 8) - mms(False, 4) >= 4 * 2 * 11
    # segment sums: only the inputs' products grow with the tokens
    seg4, seg8 = mms(True, 4), mms(True, 8)
    assert seg8 - seg4 <= 4 * 12
    assert seg8 < mms(False, 8) * 0.65


def test_segment_sums_under_bf16_autocast_stay_within_bf16_rounding_of_per_token_autograd():
    # the weights are cast once per segment and the products run in bf16, as autocast runs them
    def run(segment_grads):
        torch.manual_seed(3)
        g, d = _models()
        g.segment_grads = segment_grads
        real = torch.randint(2, V, (3, 4 + 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = generator_adversarial_step(g, d, RSGAN(), real, 4, 16, 8, beta=2.0)
        return loss, {n: p.grad for n, p in g.named_parameters() if p.grad is not None}

    (loss_seg, seg), (loss_ref, ref) = run(True), run(False)
    assert loss_seg == pytest.approx(loss_ref, rel=1e-3) and seg.keys() == ref.keys()
    for name, r in ref.items():
        assert seg[name].dtype == torch.float32
        assert (seg[name] - r).abs().max() <= 2e-2 * r.abs().max() + 1e-8, name
