"""Key/value cache for token-by-token decoding, differentiable through in-place appends.

Why: in a straight-through rollout every generated token's key and value must stay differentiable
until its segment is back-propagated. A cache grown with ``torch.cat`` hands attention a new
[B, L, H, D] tensor at every step and autograd keeps all of them: the memory of a segment grows
with the square of its length. ``KVCache`` owns one preallocated buffer per layer for K and one for
V, writes each step in place and gives attention a view of the valid window; the gradients of those
views are summed into one preallocated accumulator per buffer.

Implementations (``impl``), same API and same results:
  - ``"cpp"``:   the C++ extension ``tgan._C`` (csrc/kv_cache.cpp): one autograd node per append,
                 built and run in C++; CPU and CUDA tensors (ATen ops only).
  - ``"torch"``: the same algorithm in Python (a ``torch.autograd.Function``): the reference.
  - ``"cat"``:   the naive cache that ``torch.cat``s every step (memory quadratic in the segment
                 length), kept for comparison.
  - ``"auto"``:  ``"cpp"`` when the extension is built, else ``"torch"``.

How in-place appends stay differentiable (both buffered implementations):
  - buffers are head-major [B, H, C, D]; an append writes positions [end, end+n) and returns the
    window views ``buf[:, :, start:end+n].transpose(1, 2)`` ([B, L, H, D], position order), each
    with its own version counter: a later append writes outside every earlier view, so autograd
    must not treat it as a modification of a saved view;
  - each differentiable append is one autograd node with inputs (k, v, previous append's token)
    and outputs (K view, V view, new token). The token chain makes the append of position p an
    ancestor of every later append, so autograd runs its backward only after every later step's
    attention has added its gradient into the accumulator; the node then adds its own view's
    gradient, takes the finished gradient of positions [p, p+n) for k and v, and zeroes them;
  - each buffer set ("store") counts differentiable appends whose node has neither run backward
    nor died. ``reset`` reuses the buffers only when that count is 0, otherwise it allocates new
    ones and the old graph keeps its own; moving a sliding window to the front of the buffer
    (compaction) needs the same. Overwriting positions bumps an epoch that a late backward checks,
    so a gradient through overwritten values raises instead of being silently wrong.

One append per layer and step: layer l's keys come from layer l-1's output, so the layers of one
step cannot be appended in one call. The C++ append is one Python -> C++ call that builds its
autograd node in C++. On the benchmark CPU (one thread, B = 1, H = 2, D = 32) an append alone under
autograd took 15 us (C++), 53 us (Python Function), 26 us (torch.cat, short windows); with its
backward and a small loss (benchmarks/bench_kv_cache.py::test_append) 166 / 263 / 167 us.

Measured memory (benchmarks/bench_rollout.py, CPU, 2-layer model, H = 2, D = 32, memory 256, B = 1,
eager attention): peak bytes held for backward by a 1024-token segment 36 MB with either buffered
cache against 580 MB with torch.cat; with 256-token segments 8.2 MB for a 512-token rollout and
8.4 MB for 4096 tokens. What still grows with the square of the segment length on the CPU is the
eager attention's own O(B·H·L) per step (probabilities), D times less than the cat cache's copies.

Limits: ``torch.autograd.grad(..., inputs=...)`` that stops inside a segment can leave entries in
an accumulator; ``reset`` clears them. Forward-mode AD, functorch transforms and torch.compile of
an append are not supported (the append is opaque).
"""
from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)

IMPLS = ("auto", "cpp", "torch", "cat")

try:  # the compiled extension is optional: TGAN_SKIP_EXT=1 builds none
    from tgan import _C
    _C_ERROR: Exception | None = None
except ImportError as e:  # pragma: no cover - depends on the build
    _C = None
    _C_ERROR = e


def cpp_available() -> bool:
    """True when the C++ extension ``tgan._C`` is built and imports."""
    return _C is not None


_WARNED_NO_EXT = False


def _warn_no_extension() -> None:
    """Say once per process that impl="auto" runs the Python cache because tgan._C is missing."""
    global _WARNED_NO_EXT
    if not _WARNED_NO_EXT:
        _WARNED_NO_EXT = True
        warnings.warn(
            f"KVCache: the C++ extension tgan._C did not import ({_C_ERROR}); impl='auto' uses the "
            "Python implementation (impl='torch'), slower per append (53 us against 15 us on one CPU "
            "thread). Build it with "
            "`pip install --no-build-isolation -e .` (without TGAN_SKIP_EXT=1), or pass "
            "impl='torch' to choose it explicitly", RuntimeWarning, stacklevel=3)


def resolve_impl(impl: str) -> str:
    """The implementation ``impl`` stands for ("auto" -> "cpp" or "torch"); clear errors otherwise."""
    if impl not in IMPLS:
        raise ValueError(f"KVCache: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        if _C is None:
            _warn_no_extension()
            return "torch"
        return "cpp"
    if impl == "cpp" and _C is None:
        raise RuntimeError(
            "KVCache: impl='cpp' needs the C++ extension tgan._C, which is not built "
            f"({_C_ERROR}); build it with `pip install --no-build-isolation -e .` from the "
            "repository root (without TGAN_SKIP_EXT=1), or use impl='torch'"
        )
    return impl


class KVCache:
    """Per-layer key/value cache of one batch for token-by-token decoding.

    Args:
        n_layer: number of layers (each has its own K and V buffers).
        batch: B.
        capacity: C, positions per buffer (memory + segment for a rollout).
        n_head, d_head: H, D.
        dtype, device: of the buffers; appended keys/values must match them.
        impl: "auto" | "cpp" | "torch" | "cat" (see the module docstring).
        grow: when an append does not fit, double the capacity instead of raising. Without it a
            full cache raises, except that a sliding window (see ``append``) is moved to the front
            of the buffer when no pending graph reads it.

    Shapes: append(layer, k [B, n, H, D], v [B, n, H, D], window=None) -> (K [B, L, H, D],
    V [B, L, H, D]): views of the layer's valid window in position order, the n new positions last.
    ``window`` keeps at most that many earlier positions (a sliding window), so L <= window + n.
    The views stay valid for backward until the cache is reset; values of positions dropped from
    the window may be overwritten by a later append when no graph is pending.
    """

    def __init__(self, n_layer: int, batch: int, capacity: int, n_head: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device="cpu", impl: str = "auto", grow: bool = False):
        for name, val in (("n_layer", n_layer), ("batch", batch), ("capacity", capacity),
                          ("n_head", n_head), ("d_head", d_head)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"KVCache: {name} must be a positive int, got {val!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"KVCache: dtype must be a floating torch.dtype, got {dtype!r}")
        self.impl = resolve_impl(impl)
        device = torch.device(device)
        if self.impl == "cpp":
            self._c = _C.KVCache(n_layer, batch, capacity, n_head, d_head, dtype, device, grow)
        elif self.impl == "torch":
            self._c = TorchKVCache(n_layer, batch, capacity, n_head, d_head, dtype, device, grow)
        else:
            self._c = CatKVCache(n_layer, batch, capacity, n_head, d_head, dtype, device, grow)
        # The per-step call goes straight to the implementation (no Python frame in between).
        self.append = self._c.append

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, window: int | None = None):
        """Write k, v [B, n, H, D] after the layer's last position; return its K, V window views
        [B, L, H, D]. (Replaced per instance by the implementation's own method.)"""
        return self._c.append(layer, k, v, window)

    def keys(self, layer: int) -> torch.Tensor:
        """The K view [B, L, H, D] returned by the layer's last append ([B, 0, H, D] before any)."""
        return self._c.keys(layer)

    def values(self, layer: int) -> torch.Tensor:
        """The V view [B, L, H, D] returned by the layer's last append."""
        return self._c.values(layer)

    def length(self, layer: int = 0) -> int:
        """L: positions in the layer's current window."""
        return self._c.length(layer)

    def reset(self, batch: int | None = None, capacity: int | None = None) -> None:
        """Empty every layer (optionally for another batch size or capacity). Buffers are reused in
        place unless a graph built on them has not been back-propagated (or dropped) yet."""
        self._c.reset(batch, capacity)

    @property
    def capacity(self) -> int | None:
        """C (None for the unbounded "cat" cache)."""
        return self._c.capacity

    @property
    def batch(self) -> int:
        return self._c.batch

    @property
    def pending(self) -> int:
        """Differentiable appends whose backward has not run and whose graph is alive."""
        return self._c.pending

    def matches(self, n_layer, n_head, d_head, dtype, device) -> bool:
        """True when this cache can serve a model with these sizes, dtype and device."""
        c = self._c
        return (c.n_layer, c.n_head, c.d_head, c.dtype, torch.device(c.device)) == (
            n_layer, n_head, d_head, dtype, torch.device(device))


# ---- pure-PyTorch implementation (the reference; same algorithm as csrc/kv_cache.cpp) ---------------

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


# ---- fake kernels of the C++ ops (shapes only), for torch.compile / FakeTensor / opcheck ------------

if _C is not None:
    @torch.library.register_fake("tgan::kv_write")
    def _kv_write_fake(k_cache, v_cache, k, v, pos):
        return None

    @torch.library.register_fake("tgan::kv_grad_take")
    def _kv_grad_take_fake(gk_cache, gv_cache, gk, gv, start, pos, n):
        B, H, _, D = gk_cache.shape
        return gk_cache.new_empty(B, n, H, D), gv_cache.new_empty(B, n, H, D)
