"""Checkpoints without pickle: weights and optimizer tensors as safetensors, the rest as JSON.

A checkpoint is a directory ``<run>/checkpoints/step_<N>/`` holding
  - ``<name>.safetensors`` for every model (weights),
  - ``optim_<name>.safetensors`` + the structure in ``meta.json`` for every optimizer,
  - ``rng.safetensors`` (torch CPU/CUDA generator states),
  - ``meta.json``: kind, step, configs, scheduler states, numpy/python RNG states, user extras.
It is written into a temporary directory and renamed into place, and ``meta.json`` is the last file
written, so a crash mid-write never leaves a checkpoint that looks complete. ``latest`` finds the
newest complete one.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

FORMAT = 1
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or of the wrong kind."""


def _flatten_optim(sd: dict) -> tuple[dict, dict]:
    tensors, state_meta = {}, {}
    for idx, st in sd["state"].items():
        entry = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
                entry[k] = "__tensor__"
            else:
                entry[k] = v
        state_meta[str(idx)] = entry
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def _unflatten_optim(tensors: dict, meta: dict) -> dict:
    state = {}
    for idx, entry in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"{idx}.{k}"] if v == "__tensor__" else v) for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict, dict]:
    """(tensor states, JSON states) of every RNG a run draws from."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def restore_rng(tensors: dict, meta: dict) -> None:
    """Restore what ``capture_rng`` saved."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    v, st, g = meta["python"]
    random.setstate((v, tuple(st), g))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


@dataclass
class Checkpoint:
    """A loaded checkpoint: everything as plain dicts, ready to be applied."""

    path: Path
    kind: str
    step: int
    models: dict = field(default_factory=dict)  # name -> state_dict
    optimizers: dict = field(default_factory=dict)  # name -> optimizer state_dict
    meta: dict = field(default_factory=dict)
    rng_tensors: dict = field(default_factory=dict)

    @property
    def configs(self) -> dict:
        return self.meta.get("configs", {})

    @property
    def extra(self) -> dict:
        return self.meta.get("extra", {})

    def restore_rng(self) -> None:
        restore_rng(self.rng_tensors, self.meta["rng"])


def save_checkpoint(run_dir, step: int, kind: str, models: dict, optimizers: dict | None = None,
                    schedulers: dict | None = None, configs: dict | None = None, extra: dict | None = None,
                    keep: int = 3, pin: bool = False) -> Path:
    """Write ``<run_dir>/checkpoints/step_<step>`` atomically and keep the newest ``keep`` of them.

    A checkpoint saved with ``pin=True`` (the end of a pre-training stage) is never pruned.

    Args:
        models: name -> nn.Module (unwrapped; DDP wrappers are unwrapped here).
        optimizers: name -> torch.optim.Optimizer.
        schedulers: name -> LR scheduler (its state_dict must be JSON-serialisable).
        configs: name -> dict (model configs, training config).
        extra: JSON-serialisable user state (e.g. the Gumbel temperature step, data cursor).
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, m in models.items():
        m = getattr(m, "module", m)
        sd = {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}
        save_file(sd, str(tmp / f"{name}.safetensors"))
    optim_meta = {}
    for name, opt in (optimizers or {}).items():
        tensors, meta = _flatten_optim(opt.state_dict())
        save_file(tensors, str(tmp / f"optim_{name}.safetensors"))
        optim_meta[name] = meta
    rng_t, rng_meta = capture_rng()
    save_file(rng_t, str(tmp / "rng.safetensors"))
    meta = {
        "format": FORMAT, "kind": kind, "step": int(step), "models": sorted(models),
        "optimizers": optim_meta, "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        "configs": configs or {}, "extra": extra or {}, "rng": rng_meta, "pinned": bool(pin),
    }
    with open(tmp / "meta.json", "w") as f:  # written last: its presence marks completeness
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        if not is_pinned(old):
            shutil.rmtree(old, ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    return final


def list_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / "meta.json").is_file()]
    return [p for _, p in sorted(found)]


def read_meta(path) -> dict:
    """A checkpoint directory's meta.json (step, stage, configs; no tensors)."""
    try:
        return json.loads((Path(path) / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path}: meta.json is unreadable ({e})") from e


def is_pinned(path) -> bool:
    """Whether a checkpoint directory was saved with ``pin=True``."""
    try:
        return bool(read_meta(path).get("pinned"))
    except CheckpointError:
        return False


def latest_checkpoint(run_dir) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    cps = list_checkpoints(run_dir)
    return cps[-1] if cps else None


def resolve_checkpoint(path) -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (its newest one)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if (p / "meta.json").is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise CheckpointError(f"{p} holds no complete checkpoint (expected meta.json or checkpoints/step_*/)")
    return latest


def load_checkpoint(path, kind: str | tuple | None = None, map_location="cpu") -> Checkpoint:
    """Load a checkpoint (directory, or run directory -> newest). ``kind`` checks what it holds."""
    p = resolve_checkpoint(path)
    meta = read_meta(p)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {p}: format {meta.get('format')!r}, expected {FORMAT}")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and meta.get("kind") not in kinds:
        raise CheckpointError(f"checkpoint {p} is a {meta.get('kind')!r} checkpoint, expected one of {list(kinds)}")
    device = str(map_location)
    try:
        models = {n: load_file(str(p / f"{n}.safetensors"), device=device) for n in meta["models"]}
        optim = {}
        for n, om in meta["optimizers"].items():
            optim[n] = _unflatten_optim(load_file(str(p / f"optim_{n}.safetensors"), device=device), om)
        rng = load_file(str(p / "rng.safetensors"))
    except Exception as e:  # safetensors raises its own error types on truncated/corrupt files
        raise CheckpointError(f"checkpoint {p} is corrupt or incomplete: {e}") from e
    return Checkpoint(path=p, kind=meta["kind"], step=meta["step"], models=models, optimizers=optim,
                      meta=meta, rng_tensors=rng)
