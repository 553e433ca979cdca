"""Peak memory of autograd's saved activations, on any device.

On CUDA ``torch.cuda.max_memory_allocated`` tells the whole story; torch's CPU allocator keeps no
peak statistic, so this counts what matters for TBPTT on any device: the bytes of tensors autograd
holds for backward, live (freed with their graph) and at peak.
"""
from __future__ import annotations

import torch


class _Held:
    __slots__ = ("t", "n", "owner")

    def __init__(self, t, n, owner):
        self.t, self.n, self.owner = t, n, owner

    def __del__(self):
        self.owner.live -= self.n


class SavedTensorBytes:
    """Context manager: ``peak`` = the most bytes autograd held for backward inside the block.

    Tensors saved twice (or views of one storage) are counted each time: it is an upper bound on
    the activation memory, exact for graphs that save each tensor once.
    """

    def __init__(self):
        self.live = self.peak = 0
        self._ctx = None

    def _pack(self, t):
        n = t.numel() * t.element_size()
        self.live += n
        self.peak = max(self.peak, self.live)
        return _Held(t, n, self)

    @staticmethod
    def _unpack(h):
        return h.t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
