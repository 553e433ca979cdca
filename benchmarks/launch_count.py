"""What a rollout token step and a decode step ask of the GPU, counted on any machine.

    python benchmarks/launch_count.py [--preset small] [--batch 4] [--segment 128] [--json F]

The GPU code path runs on CPU tensors (`gpu_path`): every op takes its Triton path, the Triton
kernels are replaced by recorders (like compile_report.py's: the launch is recorded, not run;
integer outputs are zero-filled so sampled ids stay valid), dropout takes CUDA's one fused
kernel (the CPU's decomposes into three), and the profiler's record of every op that reaches the
dispatcher, nested calls included (inside the custom ops and the C++ cache), gives the leaves, the
ops that call no other (`OpCounter`), sorted into:

  launches     ops that launch a GPU kernel (everything that is not one of the below)
  views        views and metadata ops, allocations without a fill, ops on zero elements (no
               kernel)
  syncs        ops that make the host wait for the device (``.item()``, ``nonzero``, ...)
  seed_draws   seeds drawn on the host (``tgan.ops.philox.draw_seed`` outside a ``seed_stream``),
               each a CPU randint and its read-back (not counted as launches or syncs)

plus the Triton launches (and, per rollout token, ``host_seeded_per_token``: those that draw
random bits from an int seed argument rather than a ``DeviceSeed`` read on the device, which a
captured graph would replay with the same noise), and, in separate passes without the profiler, the Python function
calls (``sys.setprofile``) and the wall time per token on this machine with the Triton kernels
as no-ops (``cpu_ms_per_token``: the host's work plus the CPU running the ATen ops, so a CPU
figure, not a GPU one). Figures are per token step over one segment once the memory is full
(the prefix fills it), split into the rollout's forward (the token loop: G, PAD mask, sampling),
D's scoring and the backward; the decode step is one no-grad token of ``generate_tokens``'s loop.

Kernel variants: every recorded Triton launch of two steady-state segments is bound the way
triton's JIT binds it for sm_90 (`compile_report._binary_key`); the distinct keys per kernel are
the binaries a GPU would compile. One per kernel means no compile once the memory is full.

Limits: the counts are of what the host asks for, not timings; where an op's CPU kernel calls
other ops its CUDA kernel does not (dropout aside), the CPU's leaves are counted; copies to the
host cannot be told apart from other copies (every tensor here is on the CPU), so ``syncs``
counts the ops that read a device value on the host.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before triton is imported: the kernels' JIT binder, not the interpreter

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_report import (_binary_key, _Recorder, cuda_gumbel_configs, h200_dr_splits,  # noqa: E402
                            h200_fwd_splits,
                            jit_functions)

# ops that read a device value on the host (a sync on CUDA)
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2",
            "unique_consecutive", "equal", "allclose"}
# no kernel: views and metadata, allocations without a fill
NO_KERNEL_OPS = {"empty", "empty_strided", "new_empty", "new_empty_strided", "empty_like",
                 "set_", "resize_", "lift_fresh", "view", "_unsafe_view", "t", "transpose",
                 "slice", "select", "unsqueeze", "squeeze", "expand", "expand_as", "as_strided",
                 "detach", "detach_", "alias", "unbind", "split", "split_with_sizes", "chunk",
                 "permute", "_reshape_alias", "narrow", "view_as", "reshape", "flatten",
                 "unflatten", "diagonal", "movedim", "contiguous", "to", "_to_copy_noop",
                 "resolve_conj", "resolve_neg", "_has_compatible_shallow_copy_type",
                 "is_same_size", "size", "stride", "dim", "numel", "is_nonzero_noop"}
# one fused kernel on CUDA, several on the CPU: counted as one, what they call inside not at all
CUDA_FUSED = {"aten::native_dropout", "aten::native_dropout_backward"}
_PHASE, _UNCOUNTED = "phase::", "launch_count::uncounted"


class OpCounter:
    """Counts the ops that reach the dispatcher while entered, per phase, from the profiler's
    record of every call, nested ones included (the ATen ops inside the custom ops and inside the
    C++ cache): the leaves (ops that call no other op) are the kernels; each is a launch, a view
    or allocation (no kernel), or a host sync. Re-entrant per block: ``with counter: ...``."""

    def __init__(self):
        self.phase = "other"
        self.counts: dict = collections.defaultdict(collections.Counter)
        self.ops: dict = collections.defaultdict(collections.Counter)
        self._stack: list = []

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile, record_function

        prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        prof.__enter__()
        mark = record_function(_PHASE + self.phase)
        mark.__enter__()
        self._stack.append((prof, mark))
        _PROFILING.append(self)
        return self

    @property
    def active(self) -> bool:
        """Entered (a seed drawn outside is not counted)."""
        return bool(self._stack)

    def __exit__(self, *exc):
        prof, mark = self._stack.pop()
        mark.__exit__(*exc)
        prof.__exit__(*exc)
        _PROFILING.remove(self)
        self._tally(prof.events())
        return False

    def _tally(self, events) -> None:
        """Walk the recorded call trees from their roots: an op that calls no launching op is a
        kernel (a launch) unless it is a view, an allocation or on zero elements; a sync op and a
        CUDA-fused op count once, whatever they call on the CPU."""
        def visit(ev, phase) -> bool:  # True when ev's subtree holds a launch or a sync
            name = ev.name
            if name == _UNCOUNTED:
                return False
            if name.startswith(_PHASE):
                phase = name[len(_PHASE):]
            is_op = name.startswith("aten::")
            op = name[len("aten::"):]
            if is_op and (name in CUDA_FUSED or op in SYNC_OPS):
                self._add(phase, "syncs" if op in SYNC_OPS else "launches", op)
                return True
            below = False
            for child in ev.cpu_children:
                below = visit(child, phase) or below
            if not is_op or below:
                return below
            shapes = [sh for sh in (ev.input_shapes or []) if isinstance(sh, list) and sh]
            no_kernel = op in NO_KERNEL_OPS or (shapes and all(0 in sh for sh in shapes))
            self._add(phase, "views" if no_kernel else "launches", op)
            return not no_kernel

        for ev in events:
            if ev.cpu_parent is None:
                visit(ev, None)

    def _add(self, phase, kind: str, op: str) -> None:
        if phase is not None:
            self.counts[phase][kind] += 1
            self.ops[phase][op] += 1

    @contextlib.contextmanager
    def in_phase(self, phase: str):
        from torch.profiler import record_function

        saved, self.phase = self.phase, phase
        try:
            with record_function(_PHASE + phase):
                yield
        finally:
            self.phase = saved


_PROFILING: list = []  # OpCounters entered


def _uncounted():
    """A block the counters leave out (the harness's own ops), free when none is counting."""
    if not _PROFILING:
        return contextlib.nullcontext()
    from torch.profiler import record_function

    return record_function(_UNCOUNTED)


class _ZeroingRecorder(_Recorder):
    """compile_report's recorder that also zero-fills the launch's integer tensor arguments (the
    sampled ids a real launch would write), so the run goes on with valid ids; float outputs keep
    whatever their allocation held."""

    def __init__(self, fn, sink):
        super().__init__(fn, sink, fn.__name__)

    def __getitem__(self, grid):
        record = super().__getitem__(grid)

        def launch(*args, **kw):
            record(*args, **kw)
            with _uncounted(), torch.no_grad():
                for a in args:
                    if isinstance(a, torch.Tensor) and not a.is_floating_point() and a.numel():
                        a.zero_()
        return launch


def _cuda_dropout(input, p=0.5, training=True, inplace=False):
    if not training or p == 0.0:
        return input
    return torch.ops.aten.native_dropout(input, p, True)[0]


@contextlib.contextmanager
def gpu_path(counter: OpCounter | None = None):
    """Run the ops' GPU code path on CPU tensors: Triton everywhere, kernels recorded, not run.

    Yields the list of recorded launches. ``counter`` (optional) leaves a seed drawn on the host
    out of its ops, and counts the draws as ``seed_draws``.
    """
    import importlib

    from tgan.ops.gumbel_softmax import kernel as gk
    from tgan.ops.gumbel_softmax import triton as gt
    from tgan.ops.philox import naive as pn
    from tgan.ops.rel_attention import kernel as rk
    from tgan.ops.rel_attention import triton as rt

    # the packages, not the public functions of the same names that tgan.ops exports
    gs = importlib.import_module("tgan.ops.gumbel_softmax")
    ra = importlib.import_module("tgan.ops.rel_attention")
    sink: list = []
    saved: list = []

    def patch(obj, name, value):
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    for mod in (rk, gk):
        for name, obj in jit_functions(mod).items():
            patch(mod, name, _ZeroingRecorder(obj, sink))
    always = lambda op, *tensors: True  # noqa: E731
    patch(ra, "use_triton", always)
    patch(gs, "use_triton", always)
    patch(gs, "_host_value_checks", lambda t: False)  # the CUDA path does not read values
    for name, stand_in in cuda_gumbel_configs(gt):
        patch(gt, name, stand_in)
    patch(rt, "interpret_mode", lambda: False)
    patch(rt, "_dr_splits", h200_dr_splits)
    patch(rt, "_fwd_splits", h200_fwd_splits)
    draw = pn._host_draw

    def counted_draw(generator):
        if counter is None or not counter.active:
            return draw(generator)
        with _uncounted():
            counter.counts[counter.phase]["seed_draws"] += 1
            return draw(generator)
    patch(pn, "_host_draw", counted_draw)
    # dropout as on CUDA: one fused kernel (aten.native_dropout), where the CPU's decomposes
    # into bernoulli_, div_ and mul
    patch(torch.nn.functional, "dropout", _cuda_dropout)
    env = os.environ.get("TGAN_TRITON_CONFIG")
    os.environ["TGAN_TRITON_CONFIG"] = "default"  # the recorder does not autotune
    try:
        yield sink
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        if env is None:
            os.environ.pop("TGAN_TRITON_CONFIG", None)
        else:
            os.environ["TGAN_TRITON_CONFIG"] = env


def _models(preset_name: str, seed: int = 0):
    from tgan.model import BertDiscriminator, TransformerXL, preset

    torch.manual_seed(seed)
    pr = preset(preset_name, vocab_size=310)
    pr.bert.vocab_size = 311
    return TransformerXL(pr.generator), BertDiscriminator(pr.bert)


@contextlib.contextmanager
def _calls_into(total: list):
    """Add the Python function calls made inside the block (``sys.setprofile``'s call events) to
    ``total[0]``."""
    def prof(frame, event, arg):
        if event == "call":
            total[0] += 1
    sys.setprofile(prof)
    try:
        yield
    finally:
        sys.setprofile(None)


def _python_calls(fn) -> int:
    """Python function calls ``fn()`` makes."""
    total = [0]
    with _calls_into(total):
        fn()
    return total[0]


def _per_token(counter: OpCounter, tokens: int) -> dict:
    out = {}
    for phase, c in counter.counts.items():
        out[phase] = {k: round(v / tokens, 2) for k, v in sorted(c.items())}
    total = collections.Counter()
    for c in counter.counts.values():
        total.update(c)
    out["total"] = {k: round(v / tokens, 2) for k, v in sorted(total.items())}
    return out


def variants(launches: list, arch: int = 90) -> dict:
    """Distinct compiled binaries per kernel among ``launches`` (sm_<arch> binder)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    backend = make_backend(GPUTarget("cuda", arch, 32))
    keys: dict = collections.defaultdict(set)
    for launch in launches:
        keys[launch["fn"].__name__].add(_binary_key(launch, backend))
    return {name: len(k) for name, k in sorted(keys.items())}


def cold_compiles(launches: list, arch: int = 90) -> dict:
    """Binaries a cold start compiles for ``launches`` (every launch of a run from its first op),
    under TGAN_TRITON_CONFIG=default (the distinct binaries recorded, the tiles pinned) and an
    estimate under ``autotune``: each distinct attention binary once per candidate tile config the
    autotuner compiles and times for it (Gumbel and sampling kernels are not autotuned)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    from tgan.ops.rel_attention import triton as impl

    backend = make_backend(GPUTarget("cuda", arch, 32))
    keys = {_binary_key(launch, backend): launch for launch in launches}
    tuned = 0
    for launch in keys.values():
        name, kw = launch["fn"].__name__, launch["kw"]
        if name in impl._KERNEL_CONFIGS:
            lists = impl._KERNEL_DECODE_CONFIGS if kw["BLOCK_M"] == 16 else impl._KERNEL_CONFIGS
            tuned += len(lists[name])
        else:
            tuned += 1
    return {"default": len(keys), "autotune": tuned}


def _host_seeded(launch: dict) -> bool:
    """Whether a recorded launch draws random bits from an int seed (a kernel argument, frozen in a
    captured graph) rather than from a ``DeviceSeed`` it reads on the device (its ``SEED``)."""
    kw, name = launch["kw"], launch["fn"].__name__
    draws = kw.get("HAS_DROPOUT", False) or (
        name in ("gumbel_st_fwd_kernel", "gumbel_st_bwd_kernel", "gumbel_noise_kernel",
                 "sample_kernel") and not kw.get("HAS_NOISE", False))
    return bool(draws) and kw.get("SEED") is None


def count_rollout(preset_name: str = "small", batch: int = 4, segment: int = 128,
                  segments: int = 2, loss: str = "rsgan", python_calls: bool = True,
                  segment_grads: bool = True) -> dict:
    """Per token step of a differentiable rollout with the memory full: ops by phase and kind,
    Triton launches, seed draws, and the kernel variants over ``segments`` segments.
    ``segment_grads``: False for plain autograd's per-token weight gradients (the old path)."""
    from tgan.gan.losses import make_loss
    from tgan.gan.rollout import disc_inputs, rollout_segments

    gen, disc = _models(preset_name)
    gen.segment_grads = segment_grads
    gen.train()
    disc.train()
    mem = gen.cfg.mem_len
    prefix = mem + 1  # the prefix fills the memory: every counted segment is steady state
    real = torch.randint(2, 300, (batch, prefix + segment * (segments + 1)))
    lossf = make_loss(loss)

    def run(counter=None, sink=None, count_from=1, around=None):
        it = rollout_segments(gen, real, prefix, segment * (segments + 1), segment, 1.0,
                              mem_len=mem)
        n0 = 0
        for s in range(segments + 1):
            active = counter is not None and s >= count_from
            ctx = counter if active else contextlib.nullcontext()
            if around is not None and s >= count_from:
                ctx = around()
            with ctx:
                if s == count_from and sink is not None:
                    n0 = len(sink)
                with (counter.in_phase("forward") if active else contextlib.nullcontext()):
                    s_, fake, _ = next(it)
                with (counter.in_phase("D") if active else contextlib.nullcontext()):
                    real_seg, fk = disc_inputs(real, fake, s_, prefix, segment, False)
                    d_f = disc(fk)
                    with torch.no_grad():
                        d_r = disc(real_seg)
                    lg = lossf.gen_loss(d_r, d_f, fake=fk)
                with (counter.in_phase("backward") if active else contextlib.nullcontext()):
                    lg.backward()
        it.close()
        return n0

    counter = OpCounter()
    with gpu_path(counter) as sink:
        n0 = run(counter, sink)
        launches = sink[n0:]
    cold = cold_compiles(sink)  # every launch from the prefix's forward on: a cold start's
    res = {"preset": preset_name, "batch": batch, "segment": segment, "segments": segments,
           "segment_grads": segment_grads,
           "per_token": _per_token(counter, segments * segment),
           "triton_per_token": round(len(launches) / (segments * segment), 2),
           "host_seeded_per_token": round(sum(map(_host_seeded, launches)) / (segments * segment), 2),
           "cold_compiles": cold,
           "variants": variants(launches),
           "top_ops": dict(collections.Counter(
               {k: round(v / (segments * segment), 2) for ph in counter.ops.values()
                for k, v in ph.items()}).most_common(15))}
    if python_calls:  # over the same steady-state segments as the counts
        calls, seconds = [0], [0.0]

        @contextlib.contextmanager
        def timed():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                seconds[0] += time.perf_counter() - t0
        with gpu_path():
            run(around=lambda: _calls_into(calls))
            run(around=timed)
        res["python_calls_per_token"] = round(calls[0] / (segments * segment), 1)
        res["cpu_ms_per_token"] = round(1e3 * seconds[0] / (segments * segment), 2)
    return res


def count_decode(preset_name: str = "small", batch: int = 4, steps: int = 64, context: int = 64,
                 python_calls: bool = True) -> dict:
    """Per no-grad decode step of ``generate_tokens`` once the cache holds a full window of
    ``context`` positions: the difference between a call of ``steps`` more tokens and one of a
    single token after the same primer. The ops of a step do not depend on ``context`` (only
    their sizes do); a short one keeps the profiled primer short."""
    from tgan.sampling import generate_tokens

    gen, _ = _models(preset_name)
    primer = torch.randint(2, 300, (batch, context + 1))

    def run(n):
        return generate_tokens(gen, batch, context + 1 + n, primer=primer, context=context, seed=1)

    counter = OpCounter()
    with gpu_path(counter) as sink:
        run(1)  # one-time work (caches built on first use) out of both counted calls
        del sink[:]
        with counter:
            run(1)
        base = collections.Counter(counter.counts["other"])
        n_base = len(sink)
        counter.counts.clear()
        with counter:
            run(1 + steps)
        c = collections.Counter(counter.counts["other"])
        launches = sink[2 * n_base:]  # the second call's tokens after the first call's length
    c.subtract(base)
    res = {"preset": preset_name, "batch": batch, "steps": steps, "context": context,
           "per_token": {k: round(v / steps, 2) for k, v in sorted(c.items())},
           "triton_per_token": round(len(launches) / steps, 2),
           "variants": variants(launches)}
    if python_calls:
        with gpu_path():
            run(1)  # one-time work out of both, as above
            short = _python_calls(lambda: run(1))
            long = _python_calls(lambda: run(1 + steps))
        res["python_calls_per_token"] = round((long - short) / steps, 1)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--segment", type=int, default=128, help="rollout segment length (default 128)")
    p.add_argument("--decode-steps", type=int, default=64, help="decode steps counted (default 64)")
    p.add_argument("--per-token-weight-grads", action="store_true",
                   help="also count the rollout with plain autograd's per-token weight gradients")
    p.add_argument("--no-python-calls", action="store_true", help="skip the Python-call pass")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)
    calls = not args.no_python_calls
    out = {"rollout": count_rollout(args.preset, args.batch, args.segment, python_calls=calls),
           "decode": count_decode(args.preset, args.batch, args.decode_steps, python_calls=calls)}
    if args.per_token_weight_grads:
        out["rollout_per_token_weight_grads"] = count_rollout(
            args.preset, args.batch, args.segment, python_calls=calls, segment_grads=False)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
