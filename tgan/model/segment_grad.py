"""Weight gradients of a token-by-token segment computed once per segment, not once per token.

A differentiable rollout runs every linear layer once per token. Plain autograd then computes,
for each token, the weight's gradient (one ``mm``) and adds it into the weight's gradient (one
``add``, and one more per bias): two or three kernels per layer and token that only sum.
``SegmentLinears`` stands between the parameters and a segment's token steps:

  - on first use in the segment, each weight (and its bias) goes through ``_SegmentWeight``, an
    autograd node that casts it once to the compute dtype (autocast's, when enabled) and whose
    backward, run by autograd after every token's backward is done, returns the whole gradient:
    G^T X over the segment's stacked inputs X and output gradients G (X^T G for a transposed use,
    such as the tied embedding's input side), and G summed for the bias: one ``mm`` per weight
    per segment;
  - each token's ``linear`` is a ``_StepLinear``: its backward computes the input's gradient only
    and hands (x, g) to the segment's store.

The gradients equal autograd's (the same sums, in one product). The store holds each token's
output gradient until the segment's backward reaches its weights: [B, out] per token and layer,
bounded by the segment, not the rollout.

Limits: no double backward (the backwards are ``once_differentiable``: ``create_graph=True``
raises); ``torch.autograd.grad(..., inputs=...)`` that does not reach a weight's segment node
leaves that weight's store filled, so a later backward through the same (retained) graph would
count those tokens twice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class _SegmentWeight(torch.autograd.Function):
    """(W, b) -> their compute-dtype copies for one segment; backward: the segment's sums."""

    @staticmethod
    def forward(ctx, weight, bias, dtype, store):
        ctx.set_materialize_grads(False)
        ctx.store, ctx.has_bias = store, bias is not None
        ctx.w_dtype = weight.dtype
        ctx.b_dtype = bias.dtype if bias is not None else None
        w = weight.to(dtype) if weight.dtype != dtype else weight.view_as(weight)
        if bias is None:
            return w, None
        return w, (bias.to(dtype) if bias.dtype != dtype else bias.view_as(bias))

    @staticmethod
    @once_differentiable
    def backward(ctx, _gw, _gb):
        entries, ctx.store[:] = list(ctx.store), []
        grad_w = grad_b = None
        want_w, want_b = ctx.needs_input_grad[0], ctx.has_bias and ctx.needs_input_grad[1]
        normal = [(x, g) for x, g, t in entries if not t]
        trans = [(x, g) for x, g, t in entries if t]
        for group, transposed in ((normal, False), (trans, True)):
            if not group:
                continue
            G = torch.cat([g.reshape(-1, g.shape[-1]) for _, g in group])
            if want_w:
                X = torch.cat([x.reshape(-1, x.shape[-1]) for x, _ in group])
                # each part in the weight's dtype before they are summed (fp32 under autocast)
                part = (X.t() @ G if transposed else G.t() @ X).to(ctx.w_dtype)
                grad_w = part if grad_w is None else grad_w + part
            if want_b and not transposed:
                grad_b = G.sum(0).to(ctx.b_dtype)
        return grad_w, grad_b, None, None


class _StepLinear(torch.autograd.Function):
    """One token's x @ W^T + b (or x @ W, ``transposed``) on the segment's weight copies; its
    backward gives x's gradient and stores (x, g) for the weight's segment node."""

    @staticmethod
    def forward(ctx, x, w, b, store, transposed):
        xc = x.to(w.dtype) if x.dtype != w.dtype else x
        with torch.autocast(x.device.type, enabled=False):
            y = xc @ w if transposed else F.linear(xc, w, b)
        ctx.save_for_backward(xc, w)
        ctx.store, ctx.transposed = store, transposed
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        xc, w = ctx.saved_tensors
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # the weights' segment node runs
            ctx.store.append((xc.detach(), g.detach(), ctx.transposed))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g @ w.t() if ctx.transposed else g @ w
        return grad_x, None, None, None, None


class SegmentLinears:
    """The linear layers of one segment's token steps, with their weight gradients summed once per
    segment (see the module docstring). ``linear(x, weight, bias)`` and ``matmul(x, weight)``
    (x @ weight) stand for ``F.linear`` and ``@`` inside the segment."""

    def __init__(self):
        self._copies: dict = {}

    def _weights(self, weight, bias, like):
        key = id(weight)
        got = self._copies.get(key)
        if got is None:
            store: list = []
            w, b = _SegmentWeight.apply(weight, bias, _compute_dtype(like.device, weight.dtype), store)
            got = self._copies[key] = (w, b, store, bias)
        elif got[3] is not bias:
            raise ValueError("SegmentLinears: a weight is used with two different biases in one segment")
        return got

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """``F.linear(x, weight, bias)``."""
        w, b, store, _ = self._weights(weight, bias, x)
        return _StepLinear.apply(x, w, b, store, False)

    def matmul(self, x: torch.Tensor, weight: torch.Tensor, linear_bias: torch.Tensor | None = None):
        """``x @ weight`` (e.g. one-hots times a tied embedding table). ``linear_bias``: the bias
        that ``linear`` calls with the same weight take in this segment (not applied here)."""
        w, _, store, _ = self._weights(weight, linear_bias, x)
        return _StepLinear.apply(x, w, None, store, True)

    def module(self, m: torch.nn.Linear, x: torch.Tensor):
        """``m(x)`` for an ``nn.Linear``."""
        return self.linear(x, m.weight, m.bias)
