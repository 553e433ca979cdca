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
  - ``"torch"``: the same algorithm in Python (a ``torch.autograd.Function``): the reference
                 (``naive.TorchKVCache``).
  - ``"cat"``:   the naive cache that ``torch.cat``s every step (memory quadratic in the segment
                 length), kept for comparison (``naive.CatKVCache``).
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
autograd node in C++. The cost of an append (benchmarks/bench_kv_cache.py) and the bytes held for
backward by a segment (benchmarks/bench_rollout.py), for each implementation, are in
benchmarks/RESULTS.md. What still grows with the square of the segment length on the CPU is the
eager attention's own O(B·H·L) per step (probabilities), D times less than the cat cache's copies.

Limits: ``torch.autograd.grad(..., inputs=...)`` that stops inside a segment can leave entries in
an accumulator; ``reset`` clears them. Forward-mode AD, functorch transforms and torch.compile of
an append are not supported (the append is opaque).
"""
from __future__ import annotations

import logging
import warnings

import torch

from tgan.ops.kv_cache.naive import CatKVCache, TorchKVCache

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
            "Python implementation (impl='torch'), slower per append. Build it with "
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


# ---- fake kernels of the C++ ops (shapes only), for torch.compile / FakeTensor / opcheck ------------

if _C is not None:
    @torch.library.register_fake("tgan::kv_write")
    def _kv_write_fake(k_cache, v_cache, k, v, pos):
        return None

    @torch.library.register_fake("tgan::kv_grad_take")
    def _kv_grad_take_fake(gk_cache, gv_cache, gk, gv, start, pos, n):
        B, H, _, D = gk_cache.shape
        return gk_cache.new_empty(B, n, H, D), gv_cache.new_empty(B, n, H, D)
