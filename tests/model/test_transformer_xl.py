import pytest
import torch
import torch.nn.functional as F

from tgan.model import GeneratorConfig, TransformerXL, preset

V = 37


def _gen(**kw):
    cfg = GeneratorConfig(vocab_size=V, n_layer=2, d_model=24, n_head=3, d_head=8, d_inner=40, tgt_len=8,
                          mem_len=16, eval_mem_len=64, dropout=0.0, attn_dropout=0.0, init_std=0.2, **kw)
    return TransformerXL(cfg).eval()


def test_two_segments_with_memory_equal_joint_forward():
    g = _gen()
    x = torch.randint(1, V, (2, 23))
    with torch.no_grad():
        joint, _ = g(x, mem_len=64)
        a, mems = g(x[:, :11], mem_len=64)
        b, _ = g(x[:, 11:], mems=mems, mem_len=64)
    torch.testing.assert_close(b, joint[:, 11:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, joint[:, :11], rtol=1e-5, atol=1e-5)


def test_memory_is_truncated_to_mem_len():
    g = _gen()
    x = torch.randint(1, V, (2, 20))
    _, mems = g(x, mem_len=5)
    assert all(m.shape == (2, 5, 24) for m in mems)
    assert not any(m.requires_grad for m in mems)
    g.train()
    _, mems = g(x, mem_len=5, detach_mems=False)
    assert all(m.requires_grad for m in mems)


def test_causal_no_logit_depends_on_a_later_token():
    g = _gen()
    x = torch.randint(1, V, (1, 15))
    y = x.clone()
    y[0, 9] = (x[0, 9] + 1) % V
    with torch.no_grad():
        lx, _ = g(x)
        ly, _ = g(y)
    torch.testing.assert_close(lx[:, :9], ly[:, :9])
    assert not torch.allclose(lx[:, 9:], ly[:, 9:])


def test_one_hot_input_equals_token_ids():
    g = _gen()
    x = torch.randint(1, V, (2, 13))
    with torch.no_grad():
        a, _ = g(x)
        b, _ = g(F.one_hot(x, V).float())
    torch.testing.assert_close(a, b)


def test_step_decoding_matches_segment_forward_with_sliding_window():
    g = _gen()
    x = torch.randint(1, V, (2, 30))
    with torch.no_grad():
        state = g.init_state(None, batch_size=2)
        mems = None
        for t in range(30):
            a = g.step(x[:, t], state, max_context=7)
            b, mems = g(x[:, t:t + 1], mems=mems, mem_len=7)
            torch.testing.assert_close(a, b[:, 0], rtol=1e-5, atol=1e-5)
        assert state.length == 8


def test_step_from_memory_continues_a_segment():
    g = _gen()
    x = torch.randint(1, V, (2, 20))
    with torch.no_grad():
        joint, _ = g(x, mem_len=64)
        _, mems = g(x[:, :12], mem_len=64)
        state = g.init_state(mems)
        outs = [g.step(x[:, t], state, max_context=64) for t in range(12, 20)]
    torch.testing.assert_close(torch.stack(outs, 1), joint[:, 12:], rtol=1e-5, atol=1e-5)


def test_gradient_reaches_every_parameter_through_soft_input_and_memory():
    g = _gen()
    g.train()
    x = torch.randint(1, V, (2, 10))
    _, mems = g(x, detach_mems=False)
    soft = torch.softmax(torch.randn(2, 6, V), -1).requires_grad_(True)
    logits, _ = g(soft, mems=mems)
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_bad_inputs_raise_clear_errors():
    g = _gen()
    with pytest.raises(ValueError, match="vocab_size"):
        g(torch.rand(1, 3, V + 1))
    with pytest.raises(ValueError, match="x must be"):
        g(torch.randint(0, V, (3,)))
    with pytest.raises(ValueError, match="n_layer"):
        GeneratorConfig(n_layer=0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_presets_have_the_papers_sizes():
    p = preset("paper").generator
    sizes = (p.n_layer, p.d_model, p.n_head, p.d_head, p.d_inner, p.tgt_len, p.mem_len)
    assert sizes == (6, 500, 10, 50, 1000, 128, 1024)
    assert p.dropout == 0.1 and p.attn_dropout == 0.1 and p.init_std == 0.01
    b = preset("paper").bert
    assert (b.n_layer, b.d_model, b.n_head, b.d_inner, b.max_len) == (5, 768, 12, 3072, 512)
