import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tgan.model import BertConfig, BertDiscriminator, CNNConfig, CNNDiscriminator
from tgan.model.masking import IGNORE, span_mask, token_mask

V = 41


def _bert():
    return BertDiscriminator(BertConfig(vocab_size=V, n_layer=2, d_model=32, n_head=4, d_inner=64, max_len=64,
                                        dropout=0.0, attn_dropout=0.0)).eval()


@pytest.mark.parametrize("make", [
    _bert, lambda: CNNDiscriminator(CNNConfig(vocab_size=V, d_embed=16, n_filters=8, dropout=0.0)).eval()])
def test_one_hot_equals_ids_and_gradient_reaches_the_input(make):
    d = make()
    x = torch.randint(2, V - 1, (3, 17))
    oh = F.one_hot(x, V).float().requires_grad_(True)
    torch.testing.assert_close(d(x), d(oh))
    d(oh).sum().backward()
    assert oh.grad.abs().sum() > 0
    # a generator's one-hots leave out MASK (the last id): V-1 columns are accepted
    torch.testing.assert_close(d(F.one_hot(x, V - 1).float()), d(x))


def test_bert_gradient_reaches_every_parameter():
    d = _bert().train()
    x = torch.randint(2, V, (2, 9))
    (d(x).sum() + d.mlm_logits(x).logsumexp(-1).sum()).backward()
    missing = [n for n, p in d.named_parameters() if p.grad is None]
    assert not missing, missing


def test_freeze_first_layers_and_embeddings():
    d = _bert()
    d.freeze(1, embeddings=True)
    assert not d.word.weight.requires_grad and not d.position.weight.requires_grad
    assert not any(p.requires_grad for p in d.layers[0].parameters())
    assert all(p.requires_grad for p in d.layers[1].parameters())
    with pytest.raises(ValueError, match="n_layers"):
        d.freeze(3)


def test_bert_rejects_sequences_longer_than_its_positions():
    with pytest.raises(ValueError, match="max_len"):
        _bert()(torch.randint(0, V, (1, 65)))


def test_span_masking_budget_and_span_lengths():
    rng = np.random.default_rng(0)
    T, lengths, fractions = 512, [], []
    for _ in range(200):
        toks = rng.integers(2, 40, T)
        inp, lab = span_mask(toks, 40, (2, 40), rng)
        m = lab != IGNORE
        fractions.append(m.mean())
        assert (lab[m] == toks[m]).all()
        # lengths of the masked runs (adjacent spans may merge: count from run starts)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(int), [0]])))
        lengths += list(edges[1::2] - edges[::2])
    assert abs(np.mean(fractions) - 0.15) < 0.005  # 15% budget
    assert max(lengths) <= 40  # clipped spans of <= 10, merged runs stay short
    mean_len = np.mean(lengths)
    assert 3.0 < mean_len < 6.0, mean_len  # Geometric(0.2) clipped at 10 has mean ~3.9; merges add a bit
    assert np.mean(np.array(lengths) == 1) < 0.35  # unlike token masking, most runs are longer than 1


def test_span_replacement_is_80_10_10_per_span():
    rng = np.random.default_rng(1)
    toks = np.full(2000, 5)
    masked = kept = rand = 0
    for _ in range(50):
        inp, lab = span_mask(toks, 99, (10, 20), rng)
        m = lab != IGNORE
        masked += (inp[m] == 99).sum()
        kept += (inp[m] == 5).sum()
        rand += ((inp[m] >= 10) & (inp[m] < 20)).sum()
    tot = masked + kept + rand
    assert abs(masked / tot - 0.8) < 0.05 and abs(kept / tot - 0.1) < 0.04 and abs(rand / tot - 0.1) < 0.04


def test_token_masking_never_masks_specials():
    rng = np.random.default_rng(2)
    toks = np.array([0, 1] * 50 + list(range(2, 102)))
    inp, lab = token_mask(toks, 200, (2, 100), rng, budget=0.5, special=(0, 1))
    assert (lab[:100] == IGNORE).all() and (lab[100:] != IGNORE).any()


@pytest.mark.parametrize("mode,tol", [("span", 0.005), ("token", 0.01)])
def test_mask_batch_masks_15_percent_of_the_maskable_tokens(mode, tol):
    from tgan.model.masking import mask_batch

    rng = np.random.default_rng(3)
    batch = torch.from_numpy(rng.integers(2, 40, (64, 128)))
    batch[:, :8] = 0  # specials are never masked and do not count
    inp, lab = mask_batch(batch, mode, 40, (2, 40), rng, special=(0, 1))
    m = lab != IGNORE
    assert not m[:, :8].any()
    assert abs(float(m[:, 8:].float().mean()) - 0.15) < tol, float(m[:, 8:].float().mean())
    assert torch.equal(lab[m], batch[m]) and float((inp[m] == 40).float().mean()) > 0.7
