"""KVCache in plain PyTorch: the reference ``TorchKVCache`` (the algorithm of csrc/kv_cache.cpp, an
autograd Function per append) and ``CatKVCache``, the ``torch.cat`` cache kept for comparison.

Use them through ``tgan.ops.KVCache(impl="torch" | "cat")``; the module docstring of
``tgan.ops.kv_cache`` explains how the in-place appends stay differentiable.
"""
from __future__ import annotations

import torch


def _check_entries(buf: torch.Tensor, x: torch.Tensor, fn: str, name: str) -> None:
    if x.device != buf.device:
        raise ValueError(f"{fn}: {name} is on {x.device} but the cache is on {buf.device}")
    if x.dtype != buf.dtype:
        raise TypeError(f"{fn}: {name} has dtype {x.dtype} but the cache holds {buf.dtype}")
    B, H, _, D = buf.shape
    if x.dim() != 4 or x.shape[0] != B or x.shape[2] != H or x.shape[3] != D:
        raise ValueError(f"{fn}: {name} must be [B={B}, n, H={H}, D={D}], got shape {list(x.shape)}")


def _window(buf: torch.Tensor, start: int, end: int) -> torch.Tensor:
    # .data: same storage, own version counter (see the module docstring).
    return buf[:, :, start:end].transpose(1, 2).data


class _Store:
    """Buffers of one batch; nodes hold it, so a graph that outlives a reset keeps its own."""

    def __init__(self, n_layer, batch, capacity, H, D, dtype, device):
        shape = (batch, H, capacity, D)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.gk: list = []
        self.gv: list = []
        self.epoch = [0] * n_layer
        self.capacity = capacity
        self.pending = 0
        self.grad_dirty = False

    def ensure_grad(self):
        if not self.gk:
            self.gk = [torch.zeros_like(t) for t in self.k]
            self.gv = [torch.zeros_like(t) for t in self.v]


class _NodeInfo:
    __slots__ = ("store", "layer", "start", "pos", "n", "epoch", "settled")

    def __init__(self, store, layer, start, pos, n):
        self.store, self.layer, self.start, self.pos, self.n = store, layer, start, pos, n
        self.epoch = store.epoch[layer]
        self.settled = False
        store.pending += 1

    def settle(self):
        if not self.settled:
            self.settled = True
            self.store.pending -= 1

    def __del__(self):
        self.settle()


class _Append(torch.autograd.Function):
    """(k, v [B, n, H, D], token) -> (K view, V view [B, L, H, D], new token); see the module doc."""

    @staticmethod
    def forward(ctx, k, v, token, store, layer, start, pos):
        n = k.shape[1]
        store.k[layer][:, :, pos:pos + n] = k.transpose(1, 2)
        store.v[layer][:, :, pos:pos + n] = v.transpose(1, 2)
        ctx.info = _NodeInfo(store, layer, start, pos, n)
        ctx.set_materialize_grads(False)
        end = pos + n
        return _window(store.k[layer], start, end), _window(store.v[layer], start, end), k.new_empty(0)

    @staticmethod
    def backward(ctx, gk_view, gv_view, _gtoken):
        info = ctx.info
        s = info.store
        if info.epoch != s.epoch[info.layer]:
            raise RuntimeError(
                "KVCache: backward through keys/values that were overwritten: the cache was reset or "
                "compacted after this graph was built; back-propagate (or drop) a segment's graph before "
                "resetting its cache")
        info.settle()
        s.ensure_grad()
        s.grad_dirty = True
        out = []
        for acc, g in ((s.gk[info.layer], gk_view), (s.gv[info.layer], gv_view)):
            if g is not None:
                acc[:, :, info.start:info.start + g.shape[1]] += g.transpose(1, 2)
            slot = acc[:, :, info.pos:info.pos + info.n]
            out.append(slot.transpose(1, 2).contiguous())
            slot.zero_()  # consumed: a second backward (retain_graph) starts from zero again
        return out[0], out[1], None, None, None, None, None


class TorchKVCache:
    """Pure-PyTorch implementation of ``KVCache`` (use ``KVCache(impl="torch")``)."""

    def __init__(self, n_layer, batch, capacity, n_head, d_head, dtype, device, grow=False):
        self.n_layer, self.n_head, self.d_head = n_layer, n_head, d_head
        self.dtype, self.device, self.grow = dtype, torch.device(device), grow
        self._store = _Store(n_layer, batch, capacity, n_head, d_head, dtype, self.device)
        self._clear()

    def _clear(self):
        n = self.n_layer
        self._start, self._end = [0] * n, [0] * n
        self._token, self._k, self._v = [None] * n, [None] * n, [None] * n

    def _check_layer(self, layer, fn):
        if not 0 <= layer < self.n_layer:
            raise IndexError(f"KVCache.{fn}: layer must be in [0, {self.n_layer}), got {layer}")

    def append(self, layer, k, v, window=None):
        self._check_layer(layer, "append")
        s = self._store
        _check_entries(s.k[layer], k, "KVCache.append", "k")
        _check_entries(s.k[layer], v, "KVCache.append", "v")
        if v.shape != k.shape:
            raise ValueError(f"KVCache.append: v must have k's shape {list(k.shape)}, got {list(v.shape)}")
        start = self._start[layer]
        if window is not None:
            if window < 0:
                raise ValueError(f"KVCache.append: window must be >= 0, got {window}")
            start = max(start, self._end[layer] - window)
        n = k.shape[1]
        self._make_room(layer, start, n)  # commits the window start; changes nothing if it raises
        s = self._store
        pos, start, token = self._end[layer], self._start[layer], self._token[layer]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad
                                        or (token is not None and token.requires_grad)):
            kw, vw, self._token[layer] = _Append.apply(k, v, token, s, layer, start, pos)
        else:
            with torch.no_grad():
                s.k[layer][:, :, pos:pos + n] = k.transpose(1, 2)
                s.v[layer][:, :, pos:pos + n] = v.transpose(1, 2)
            kw, vw = _window(s.k[layer], start, pos + n), _window(s.v[layer], start, pos + n)
        self._end[layer] = pos + n
        self._k[layer], self._v[layer] = kw, vw
        return kw, vw

    def _make_room(self, layer, start, n):
        s = self._store
        end, C = self._end[layer], s.capacity
        if end + n <= C:
            self._start[layer] = start
            return
        keep = end - start
        if s.pending == 0 and start > 0 and keep + n <= (C // 2 if self.grow else C):
            for buf in (s.k[layer], s.v[layer]):
                src = buf[:, :, start:end]
                buf[:, :, :keep] = src.clone() if start < keep else src
            s.epoch[layer] += 1
            self._start[layer], self._end[layer], self._token[layer] = 0, keep, None
            return
        if not self.grow:
            busy = (" (a graph not yet back-propagated still reads them, so they cannot move)"
                    if s.pending > 0 else "")
            raise RuntimeError(
                f"KVCache.append: capacity exceeded: layer {layer} holds positions [{start}, {end}) of a "
                f"cache of capacity {C} and {n} more do not fit{busy}; create the cache with a larger "
                "capacity, pass a window, or use grow=True")
        new_c = max(2 * C, end + n)

        def grown(t, zero):
            out = t.new_zeros if zero else t.new_empty
            out = out(t.shape[0], t.shape[1], new_c, t.shape[3])
            out[:, :, :C] = t
            return out

        s.k = [grown(t, False) for t in s.k]
        s.v = [grown(t, False) for t in s.v]
        if s.gk:
            s.gk = [grown(t, True) for t in s.gk]
            s.gv = [grown(t, True) for t in s.gv]
        s.capacity = new_c
        self._start[layer] = start

    def keys(self, layer):
        self._check_layer(layer, "keys")
        return self._k[layer] if self._k[layer] is not None else _window(self._store.k[layer], 0, 0)

    def values(self, layer):
        self._check_layer(layer, "values")
        return self._v[layer] if self._v[layer] is not None else _window(self._store.v[layer], 0, 0)

    def length(self, layer=0):
        return self._end[layer] - self._start[layer]

    def reset(self, batch=None, capacity=None):
        s = self._store
        b = s.k[0].shape[0] if batch is None else batch
        c = s.capacity if capacity is None else capacity
        if b <= 0 or c <= 0:
            raise ValueError(f"KVCache.reset: batch and capacity must be > 0, got {b}, {c}")
        self._clear()  # drops this cache's references into the old graph first
        if s.pending > 0 or b != s.k[0].shape[0] or c != s.capacity:
            self._store = _Store(self.n_layer, b, c, self.n_head, self.d_head, self.dtype, self.device)
            return
        s.epoch = [e + 1 for e in s.epoch]
        if s.grad_dirty:
            for t in s.gk + s.gv:
                t.zero_()
            s.grad_dirty = False

    capacity = property(lambda self: self._store.capacity)
    batch = property(lambda self: self._store.k[0].shape[0])
    pending = property(lambda self: self._store.pending)
    buffer_id = property(lambda self: self._store.k[0].data_ptr())


# ---- the naive cache: torch.cat per step (the behaviour before KVCache) ---------------------------

class CatKVCache:
    """Keys/values grown with ``torch.cat`` at every append (use ``KVCache(impl="cat")``).

    Unbounded: ``capacity`` and ``grow`` are ignored. Autograd keeps every step's concatenation.
    """

    def __init__(self, n_layer, batch, capacity, n_head, d_head, dtype, device, grow=False):
        self.n_layer, self.n_head, self.d_head = n_layer, n_head, d_head
        self.dtype, self.device, self._batch = dtype, torch.device(device), batch
        self.reset()

    def append(self, layer, k, v, window=None):
        if not 0 <= layer < self.n_layer:
            raise IndexError(f"KVCache.append: layer must be in [0, {self.n_layer}), got {layer}")
        empty = self._empty()
        _check_entries(empty, k, "KVCache.append", "k")
        _check_entries(empty, v, "KVCache.append", "v")
        old_k, old_v = self._k[layer], self._v[layer]
        if old_k is None:
            kw, vw = k, v
        else:
            cut = 0 if window is None else max(0, old_k.shape[1] - window)
            kw, vw = torch.cat([old_k[:, cut:], k], dim=1), torch.cat([old_v[:, cut:], v], dim=1)
        self._k[layer], self._v[layer] = kw, vw
        return kw, vw

    def _empty(self):
        return torch.empty(self._batch, self.n_head, 0, self.d_head, dtype=self.dtype, device=self.device)

    def keys(self, layer):
        k = self._k[layer]
        return k if k is not None else self._empty().transpose(1, 2)

    def values(self, layer):
        v = self._v[layer]
        return v if v is not None else self._empty().transpose(1, 2)

    def length(self, layer=0):
        k = self._k[layer]
        return 0 if k is None else k.shape[1]

    def reset(self, batch=None, capacity=None):
        if batch is not None:
            self._batch = batch
        self._k, self._v = [None] * self.n_layer, [None] * self.n_layer

    capacity = property(lambda self: None)
    batch = property(lambda self: self._batch)
    pending = property(lambda self: 0)
