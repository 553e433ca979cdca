"""Peak memory of autograd's saved activations, on any device.

On CUDA ``torch.cuda.max_memory_allocated`` tells the whole story; torch's CPU allocator keeps no
peak statistic, so this counts what matters for TBPTT on any device: the bytes of the storages
autograd holds for backward, live (freed with their graph) and at peak. A storage saved several
times, or through several views (a KV-cache buffer), counts once.
"""
from __future__ import annotations

import torch


class _Held:
    __slots__ = ("t", "key", "owner")

    def __init__(self, t, key, owner):
        self.t, self.key, self.owner = t, key, owner

    def __del__(self):
        entry = self.owner.held[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del self.owner.held[self.key]
            self.owner.live -= entry[0]


class SavedTensorBytes:
    """Context manager: ``peak`` = the most bytes of distinct storages autograd held for backward
    inside the block; ``live`` = what it holds now."""

    def __init__(self):
        self.held: dict[int, list[int]] = {}  # storage address -> [bytes, references]
        self.live = self.peak = 0
        self._ctx = None

    def _pack(self, t):
        st = t.untyped_storage()
        key = st.data_ptr()
        entry = self.held.get(key)
        if entry is None:
            entry = self.held[key] = [st.nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        return _Held(t, key, self)

    @staticmethod
    def _unpack(h):
        return h.t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
