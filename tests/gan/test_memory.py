"""SavedTensorBytes: distinct storages saved for backward, optionally not counting inputs."""
import torch

from saved_memory import SavedTensorBytes


def test_counts_distinct_storages_and_ignores_inputs():
    x = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(32, 16, requires_grad=True)
    with SavedTensorBytes() as all_saved:
        y = (x @ w).exp()  # mm saves x and w, exp saves its output [64, 16]
    with SavedTensorBytes(ignore=[x, w]) as own:
        y2 = (x @ w).exp()
    out_bytes = 64 * 16 * 4
    assert all_saved.peak == x.nbytes + w.nbytes + out_bytes
    assert own.peak == out_bytes
    assert own.held_bytes(y2) == out_bytes and own.held_bytes(x) == 0
    y2.sum().backward()  # ignored tensors still unpack for the backward
    assert torch.allclose(w.grad, x.t() @ y.detach())
    del y, y2
    assert all_saved.live == 0 and own.live == 0


def test_double_backward_through_counted_tensors():
    """A gradient penalty (create_graph=True) gives the same result with the counter on."""
    torch.manual_seed(0)
    x = torch.randn(8, 5, requires_grad=True)
    w = torch.randn(5, 3, requires_grad=True)

    def penalty():
        out = torch.tanh(x @ w).sigmoid().sum()
        (g,) = torch.autograd.grad(out, x, create_graph=True)
        return g.pow(2).sum()

    (expected,) = torch.autograd.grad(penalty(), w)
    with SavedTensorBytes() as sb:
        p = penalty()
    (got,) = torch.autograd.grad(p, w)
    assert sb.peak > 0
    torch.testing.assert_close(got, expected)
