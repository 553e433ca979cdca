"""The rollout and generation through each KVCache implementation: same logits, samples and
parameter gradients as the naive torch.cat cache; buffers reused across segments; saved memory
far below the cat cache's."""
import pytest
import torch

from saved_memory import SavedTensorBytes

from tgan.gan.rollout import rollout_segments
from tgan.sampling import generate_tokens
from tgan.model import GeneratorConfig, TransformerXL
from tgan.ops.kv_cache import cpp_available

NEEDS_EXT = pytest.mark.skipif(not cpp_available(), reason="the C++ extension tgan._C is not built")
BUFFERED = ["torch", pytest.param("cpp", marks=NEEDS_EXT)]
V = 23


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Decode steps are tiny ops; intra-op threads only add synchronisation on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(**kw):
    cfg = dict(vocab_size=V, n_layer=2, d_model=18, n_head=3, d_head=5, d_inner=26, tgt_len=6, mem_len=5,
               eval_mem_len=9, dropout=0.0, attn_dropout=0.0, init_std=0.2)
    cfg.update(kw)
    torch.manual_seed(0)
    return TransformerXL(GeneratorConfig(**cfg))


def _rollout(impl, B=3, prefix=4, rollout=18, segment=6):
    """Logits of every step, fakes, every parameter gradient and the (cache, buffer) of each segment."""
    g = _gen()
    real = torch.randint(2, V, (B, prefix + rollout), generator=torch.Generator().manual_seed(1))
    weights = torch.randn(rollout // segment, B, segment, V, generator=torch.Generator().manual_seed(2))
    logits, caches = [], []
    step, init_state = g.step, g.init_state

    def recording_step(x, state, max_context=None):
        out = step(x, state, max_context=max_context)
        logits.append(out.detach())
        return out

    def recording_init_state(*a, **kw):
        state = init_state(*a, **kw)
        caches.append((state.cache, getattr(state.cache._c, "buffer_id", None)))
        return state

    g.step, g.init_state = recording_step, recording_init_state
    torch.manual_seed(3)  # the Gumbel noise
    fakes = []
    for s, fake, _ in rollout_segments(g, real, prefix, rollout, segment, beta=2.0, cache=impl):
        (fake * weights[s]).sum().backward()
        fakes.append(fake.detach())
    grads = {n: p.grad.clone() for n, p in g.named_parameters()}
    return torch.stack(logits, 1), torch.cat(fakes, 1), grads, caches


@pytest.mark.parametrize("impl", BUFFERED)
def test_rollout_logits_samples_and_every_gradient_match_the_cat_cache(impl):
    ref_logits, ref_fakes, ref_grads, _ = _rollout("cat")
    logits, fakes, grads, caches = _rollout(impl)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(fakes, ref_fakes)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"grad {name}: {m}")
    assert all(g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if not g.abs().sum() > 0]
    # one cache and one set of buffers for the three segments
    assert len(caches) == 3 and len({id(c) for c, _ in caches}) == 1 and len({b for _, b in caches}) == 1


@pytest.mark.parametrize("impl", BUFFERED)
def test_generation_with_a_sliding_window_matches_the_cat_cache(impl):
    g = _gen()
    primer = torch.randint(2, V, (2, 5), generator=torch.Generator().manual_seed(4))
    kw = dict(primer=primer, temperature=1.0, top_k=5, context=7, seed=0)
    ref = generate_tokens(g, 2, 41, cache="cat", **kw)
    out = generate_tokens(g, 2, 41, cache=impl, **kw)  # 41 tokens: the window moves twice
    assert torch.equal(out, ref)


def _peak(impl, segment):
    g = _gen(vocab_size=11, d_model=16, n_head=2, d_head=16, d_inner=16, mem_len=8)
    real = torch.randint(2, 11, (1, 2 + segment))
    with SavedTensorBytes() as sb:
        for _, fake, _ in rollout_segments(g, real, 2, segment, segment, beta=1.0, cache=impl):
            fake.sum().backward()
    return sb.peak


@pytest.mark.parametrize("impl", BUFFERED)
def test_saved_memory_of_a_segment_is_far_below_the_cat_cache(impl):
    # Keys/values are saved once (the buffers) instead of once per step. What still grows with the
    # square of the segment is the eager attention's own O(B·H·L) per step (probabilities, index),
    # D times smaller than the O(B·L·H·D) copies of the cat cache. Measured (d_head 16, segments
    # 48 -> 96): 219 -> 509 kB buffered, 835 -> 2927 kB cat.
    short, long = _peak(impl, 48), _peak(impl, 96)
    cat_short, cat_long = _peak("cat", 48), _peak("cat", 96)
    assert long < 2.6 * short, (short, long)
    assert cat_long > 3.2 * cat_short, (cat_short, cat_long)
    assert cat_long > 5 * long, (cat_long, long)
