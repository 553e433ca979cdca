import numpy as np
import torch
import torch.nn.functional as F

from tgan.metrics.scorers import block_features, fit_linear, pseudo_log_likelihood, split_blocks
from tgan.model import BertConfig, BertDiscriminator

V = 23


def _bert():
    return BertDiscriminator(BertConfig(vocab_size=V, n_layer=1, d_model=16, n_head=2, d_inner=32, max_len=32,
                                        dropout=0.0, attn_dropout=0.0))


def test_pll_equals_masking_each_position_by_hand():
    bert = _bert()
    blocks = torch.randint(2, V - 1, (2, 9))
    fast = pseudo_log_likelihood(bert, blocks, mask_id=V - 1, batch_size=4)
    slow = []
    for blk in blocks:
        for i in range(9):
            x = blk.clone()
            x[i] = V - 1
            slow.append(F.log_softmax(bert.mlm_logits(x[None]), -1)[0, i, blk[i]].item())
    assert abs(fast - np.mean(slow)) < 1e-5
    assert fast < 0


def test_linear_probe_separates_separable_and_not_random():
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.ones(60), torch.zeros(60)])
    x = torch.randn(120, 5, generator=g) + 3.0 * (2 * y[:, None] - 1)
    ty = (torch.rand(40, generator=g) < 0.5).float()  # held-out points of both classes
    test_x = torch.randn(40, 5, generator=g) + 3.0 * (2 * ty[:, None] - 1)
    pred = fit_linear(x, y)(test_x) > 0
    assert 10 < ty.sum() < 30 and (pred == ty.bool()).float().mean() > 0.95
    noise = fit_linear(torch.randn(400, 5, generator=g), (torch.rand(400, generator=g) < 0.5).float())
    acc = float(((noise(torch.randn(400, 5, generator=g)) > 0) == (torch.rand(400, generator=g) < 0.5)).float().mean())
    assert 0.4 < acc < 0.6


def test_block_features_and_split():
    bert = _bert()
    f = block_features(bert, torch.randint(0, V, (5, 8)), batch_size=2)
    assert f.shape == (5, V)
    blocks = split_blocks(np.arange(10), 4)
    assert [b.tolist() for b in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
