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
    inside the block; ``live`` = what it holds now.

    ``ignore``: tensors whose storages are not counted when saved (the inputs of an op, which are
    held anyway), so that ``peak`` is the activation memory the op itself adds.
    """

    def __init__(self, ignore=()):
        self.held: dict[int, list[int]] = {}  # storage address -> [bytes, references]
        self.live = self.peak = 0
        self._ctx = None
        self._ignored = {t.untyped_storage().data_ptr() for t in ignore}

    def _pack(self, t):
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self._ignored:
            return t.detach()
        entry = self.held.get(key)
        if entry is None:
            entry = self.held[key] = [st.nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        # a detached alias: holding ``t`` itself would tie a saved output to its own grad_fn
        # (a reference cycle that frees the graph only at garbage collection)
        return _Held(t.detach(), key, self)

    def held_bytes(self, t: torch.Tensor) -> int:
        """Bytes of ``t``'s storage if autograd holds it now (counted once), else 0."""
        entry = self.held.get(t.untyped_storage().data_ptr())
        return entry[0] if entry is not None else 0

    @staticmethod
    def _unpack(h):
        return h.t if isinstance(h, _Held) else h

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
