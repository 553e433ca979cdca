"""No silent fallback: TGAN_BACKEND=auto without triton, KVCache(impl="auto") without tgan._C."""
import warnings

import pytest
import torch

from tgan.ops import _backend, kv_cache


class _FakeCuda(torch.Tensor):
    """A CPU tensor that reports itself as a CUDA tensor (only ``is_cuda`` is read)."""

    @property
    def is_cuda(self):
        return True


def test_auto_backend_without_triton_warns_once_by_op(monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "auto")
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    monkeypatch.setattr(_backend, "_WARNED", set())
    x = torch.zeros(2).as_subclass(_FakeCuda)
    with pytest.warns(RuntimeWarning, match="gumbel_softmax: triton did not import"):
        assert _backend.use_triton("gumbel_softmax", x) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call of the same op stays quiet
        assert _backend.use_triton("gumbel_softmax", x) is False
        assert _backend.use_triton("rel_attention", torch.zeros(2)) is False  # CPU: no warning
    with pytest.warns(RuntimeWarning, match="rel_attention: triton did not import"):
        _backend.use_triton("rel_attention", x)


def test_kv_cache_auto_without_extension_warns_once(monkeypatch):
    monkeypatch.setattr(kv_cache, "_C", None)
    monkeypatch.setattr(kv_cache, "_C_ERROR", ImportError("no module named tgan._C"))
    monkeypatch.setattr(kv_cache, "_WARNED_NO_EXT", False)
    with pytest.warns(RuntimeWarning, match=r"tgan\._C did not import \(no module named tgan\._C\)"):
        assert kv_cache.resolve_impl("auto") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kv_cache.resolve_impl("auto") == "torch"
        assert kv_cache.resolve_impl("torch") == "torch"
    with pytest.raises(RuntimeError, match="impl='cpp' needs the C\\+\\+ extension"):
        kv_cache.resolve_impl("cpp")


def test_unknown_backend_names_the_variable(monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "foo")
    with pytest.raises(ValueError, match="TGAN_BACKEND must be one of"):
        _backend.use_triton("gumbel_softmax", torch.zeros(2))
