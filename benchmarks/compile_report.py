"""Offline compile report: the Triton kernels compiled for a GPU target on any machine, no GPU.

    python benchmarks/compile_report.py [--arch sm_90] [--json F] [--default-only] [--markdown F]
                                        [--only NAME]
    python benchmarks/compile_report.py --rollout-variants [--json F]
    python benchmarks/compile_report.py --one-token-splits [--json F]

Every kernel x config at the benchmark shapes (and the paper preset's D = 50) is compiled the
way the runtime would compile it: the real launchers (``tgan.ops``) run on CPU tensors with the
kernels replaced by recorders, so the argument list, the constexprs and triton's integer and
alignment specializations are those of a real launch; each recorded launch is then compiled with
``triton.compile`` for the target. Per compile it reports (JSON: a list of objects)

  kernel, config, case, arch         what was compiled
  use                                "default" (TGAN_TRITON_CONFIG=default), "autotune" (the
                                     autotuner may pick it) or "no" (a candidate left out)
  registers, spill_bytes             ``ptxas -v`` on the PTX (spill stores + loads)
  stack_bytes, shared_bytes          the stack frame; shared memory from the compiled metadata
  instructions                       SASS instructions of the cubin (``cuobjdump -sass``)
  loop_instructions                  SASS instructions of the largest innermost loop (back-edge)
  mufu                               special-function instructions (MUFU: ex2, lg2, rcp, ...)
  wgmma, mma                         Hopper warpgroup MMAs, and mma.sync (the pre-Hopper form)
  loop_mma_flops_per_warp            MMA FLOPs one warp issues in that loop's body
  mma_work_over_tile                 attention kernels: the loop's MMA FLOPs over all warps,
                                     over the products one iteration needs for its tile
                                     (_LOOP_PRODUCTS): 1.0 = every warp does its own share;
                                     2.0 = two warpgroups compute the same tile, or a wgmma
                                     pads 16 rows to 64 (4.0)
  needed_flops, needed_bytes         attention kernels: the work the pass must do at the row's
                                     case (`needed_work`: its products over the visible pairs at
                                     the true head size, each tensor it needs moved once); the
                                     one-hot Gumbel passes: their bytes (the floor's)
  est_issue_us, est_program_us,      ESTIMATES (see below): the grid's warp-instructions spread
  est_time_us                        over every SM; one program's own (its warps on one SM's
                                     four schedulers), the floor of a grid too small to fill the
                                     device; the larger of the two
  executed_flops, executed_bytes     attention kernels, ESTIMATES: the binary's MMA FLOPs and
                                     the bytes its global loads, stores and atomics ask for (all
                                     lanes active, cache hits included), outside the loop once
                                     and the innermost loop's body per modelled trip, over the
                                     grid; executed_over_needed_* their ratios

Below the table, per case, the backward's passes together against the work the whole backward
needs (`backward_summary`): what recomputing the scores in every pass costs.

``--rollout-variants`` compiles nothing: it counts, per attention kernel, the distinct variants
that triton's JIT cache would compile for a rollout whose context grows by one token per step
(`rollout_variants`).

``--one-token-splits`` compiles a one-token forward with and without its split over keys, side
by side, at decode batches of the small preset (H = 4, D = 64) and the paper's shape, and prints
the modelled times (`one_token_splits`, ESTIMATES).

And, for the benchmark shapes, an ESTIMATE (a model, not a measurement) of the time against the
op's floor: warp-instructions issued (1 per cycle per scheduler, 4 schedulers per SM, MUFU at a
quarter rate) over the grid, against the bytes the op must move at the copy bandwidth measured on
an H200 for that tensor (`COPY_BW`: 3.0-3.7 TB/s, benchmarks/RESULTS.md).

Launches that bind like an earlier one (same specialization and constexprs: the lengths, row
counts and seeds are not specialised on) run the same binary; it is compiled once and the row
lists those cases ("same binary"), e.g. the benchmark's T = 128 and 2048 under T = 512, and its
R = 64 and 4096 under R = 131072. Estimates are for the row's own case.

It needs triton with the NVIDIA backend (its wheel ships ptxas and cuobjdump); TRITON_INTERPRET
must not be 1 (the script clears it for itself).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before triton is imported: compile, do not interpret

import torch  # noqa: E402

H200_SMS, H200_CLOCK = 132, 1.98e9  # SMs, max SM clock (nvidia-smi)
# copy_ bandwidth on the [131072, V] tensor itself, measured on the H200 (benchmarks/RESULTS.md,
# bench_gumbel_softmax.py::test_copy_bandwidth); shapes it did not measure take the bf16 V = 390 one
COPY_BW = {("bfloat16", 310): 2.996e12, ("bfloat16", 390): 3.294e12,
           ("float32", 310): 3.493e12, ("float32", 390): 3.657e12}
COPY_BW_OTHER = 3.294e12


# ------------------------------------------------------------------------------------ recording


class _Recorder:
    """Stands in for a @triton.jit kernel: ``rec[grid](*args, **kw)`` records instead of running."""

    def __init__(self, fn, sink, case):
        self.fn, self.sink, self.case = fn, sink, case
        self.arg_names = fn.arg_names

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.sink.append({"fn": self.fn, "grid": grid, "args": args, "kw": dict(kw),
                              "case": self.case})
        return launch


def jit_functions(module) -> dict:
    """The @triton.jit kernels of ``module`` by name."""
    return {name: obj for name in dir(module)
            if hasattr(obj := getattr(module, name), "arg_names") and hasattr(obj, "params")}


def h200_dr_splits(B: int, H: int, L: int, device=None) -> int:
    """`_dr_splits` as it decides on an H200 (about 2 programs per SM), on any machine."""
    return max(1, min(B, -(-2 * H200_SMS // max(1, H * -(-L // 64)))))


def h200_fwd_splits(n_bh: int, L: int, device=None) -> int:
    """`_fwd_splits` (a one-token forward's key splits) as it decides on an H200, on any machine."""
    from tgan.ops.rel_attention import triton as impl

    return impl._splits_for(n_bh, L, H200_SMS)


def cuda_gumbel_configs(ops) -> list[tuple]:
    """(name, CUDA-sized stand-in) for the Gumbel launchers' config choices in ``ops``
    (tgan.ops.gumbel_softmax.triton), so that CPU tensors get the tiles a GPU would use."""
    config, word_config = ops._config, ops._word_config
    return [("_config", lambda R, V, mb, on_cuda, min_rows=1: config(R, V, mb, True, min_rows)),
            ("_word_config", lambda R, V, on_cuda: word_config(R, V, True)),
            ("_interpreted", lambda t: False)]


def _record(module, run, case: str) -> list[dict]:
    """Launches that ``run()`` makes of the jit kernels in ``module``."""
    sink: list[dict] = []
    saved = jit_functions(module)
    for name, obj in saved.items():
        setattr(module, name, _Recorder(obj, sink, case))
    try:
        run()
    finally:
        for name, obj in saved.items():
            setattr(module, name, obj)
    return sink


def rel_attention_launches(configs: list[str]) -> list[dict]:
    """Launches of the relative-attention forward and backward at the report's shapes."""
    from tgan.ops.rel_attention import kernel as kern
    from tgan.ops.rel_attention import triton as impl

    impl._dr_splits = h200_dr_splits
    impl._fwd_splits = h200_fwd_splits
    cases = [  # name, B, T, M, H, D, dropout, backward
        ("bench T=M=512 H=8 D=64", 32, 512, 512, 8, 64, 0.0, True),
        ("bench T=M=128 H=8 D=64", 128, 128, 128, 8, 64, 0.0, True),
        ("bench T=M=2048 H=8 D=64", 8, 2048, 2048, 8, 64, 0.0, True),
        ("paper T=128 M=1024 H=10 D=50 dropout", 4, 128, 1024, 10, 50, 0.1, True),
        ("decode T=1 M=1024 H=10 D=50", 8, 1, 1024, 10, 50, 0.0, False),
        # the small preset's rollout step at batch 4: 16 (batch, head) pairs, the forward's and the
        # dq pass's keys split 8 ways on an H200
        ("rollout T=1 M=1024 H=4 D=64 B=4 dropout split", 4, 1, 1024, 4, 64, 0.1, True),
        ("rollout T=1 M=1024 H=10 D=50 dropout", 8, 1, 1024, 10, 50, 0.1, True),
    ]
    out = []
    for config in configs:
        os.environ["TGAN_TRITON_CONFIG"] = config
        for name, B, T, M, H, D, p, bwd in cases:
            if (T <= 16) != config.startswith("16x") and config != "default":
                continue  # decode tiles for T <= 16 only, and only those there
            L = M + T
            q = torch.randn(B, T, H, D, dtype=torch.bfloat16)
            k, v = (torch.randn(B, L, H, D, dtype=torch.bfloat16) for _ in range(2))
            r = torch.randn(L, H, D, dtype=torch.bfloat16)
            u = vb = torch.randn(H, D, dtype=torch.bfloat16)
            # a rollout's token steps read their dropout seed on the device (a DeviceSeed)
            base = torch.tensor([5]) if name.startswith("rollout") else None

            def run():
                o, lse = impl.rel_attention_fwd(q, k, v, r, u, vb, D ** -0.5, p, 1234, base)
                for mode in (("split", "fused") if bwd else ()):  # TGAN_ATTN_BWD: both backwards
                    os.environ["TGAN_ATTN_BWD"] = mode
                    impl.rel_attention_bwd(torch.randn_like(o), q, k, v, r, u, vb, o, lse,
                                           D ** -0.5, p, 1234, seed_base=base)
                os.environ.pop("TGAN_ATTN_BWD", None)
                if p:  # the keep mask the tests compare the kernels' dropout with
                    impl.rel_attention_dropout_mask(B, H, T, L, 1234, p, q.device)
            for launch in _record(kern, run, name):
                launch["config"] = config
                launch["shape"] = dict(B=B, T=T, M=M, H=H, D=D)
                out.append(launch)
    os.environ.pop("TGAN_TRITON_CONFIG", None)
    return out


def gumbel_launches() -> list[dict]:
    """Launches of the Gumbel kernels on CUDA-sized tiles: R = 131072 (and the benchmark's 64 and
    4096), V = 310 / 390 (the event vocabularies), and R = 8192, V = 5000 (a row wider than one
    tile: the chunked paths); for bf16 also the embedding variants (4096 rows, E = 500) and top-k /
    top-p sampling (64 rows); the noise kernel at each shape, the bits-to-noise map on 4096 words."""
    from tgan.ops.gumbel_softmax import kernel as kern
    from tgan.ops.gumbel_softmax import triton as ops
    from tgan.ops.philox import DeviceSeed

    config, word_config, interpreted = ops._config, ops._word_config, ops._interpreted
    for name, stand_in in cuda_gumbel_configs(ops):
        setattr(ops, name, stand_in)
    out = []
    cases = [(131072, 310, dt) for dt in (torch.bfloat16, torch.float32)]
    cases += [(131072, 390, dt) for dt in (torch.bfloat16, torch.float32)]
    cases += [(8192, 5000, torch.bfloat16)]
    cases += [(R, 390, torch.bfloat16) for R in (64, 4096)]  # the benchmark's other row counts
    try:
        for R, V, dtype in sorted(cases, key=lambda c: (str(c[2]) != "torch.bfloat16", c[1])):
            x = torch.randn(R, V, dtype=dtype)
            emb = torch.randn(V, 500, dtype=dtype)
            dt = str(dtype).replace("torch.", "")
            n_emb, n_sample = min(R, 4096), min(R, 64)
            runs = [(f"R={R} V={V} {dt}", lambda: (
                ops.gumbel_softmax_fwd(x, None, 7, 0),
                ops.gumbel_softmax_bwd(torch.randn_like(x), x, None, 7, 0, 2.0),
                ops.gumbel_noise_fwd(R, V, 7, 0, x.device)))]  # the noise the tests compare with
            if dtype == torch.bfloat16:
                runs.append((f"R={n_emb} V={V} {dt} E=500", lambda: (
                    ops.gumbel_softmax_fwd(x[:n_emb], None, 7, 0, embedding=emb),
                    ops.gumbel_softmax_bwd(torch.randn(n_emb, 500, dtype=dtype), x[:n_emb], None,
                                           7, 0, 2.0, embedding=emb,
                                           index=torch.zeros(n_emb, dtype=torch.long)))))
                runs.append((f"R={n_sample} V={V} {dt} top-k/p",
                             lambda: ops.sample_logits_fwd(x[:n_sample], None, 7, 0, 0.95, 32, 1.0)))
            if (R, V, dtype) == (64, 390, torch.bfloat16):
                # a rollout's token (a DeviceSeed), and a static decode step's sampling (the seed
                # and the offset read on the device)
                ds = DeviceSeed(torch.tensor([5]), 7)
                runs.append((f"R={R} V={V} {dt} device seed", lambda: (
                    ops.gumbel_softmax_fwd(x, None, ds, 0),
                    ops.gumbel_softmax_bwd(torch.randn_like(x), x, None, ds, 0, 2.0),
                    ops.sample_logits_fwd(x, None, ds, torch.tensor([3]), 0.95, 32, 1.0))))
            runs.append(("N=4096 words", lambda: ops.gumbel_from_bits(
                torch.zeros(4096, dtype=torch.int32))))
            for name, run in runs:
                for launch in _record(kern, run, name):
                    kw = launch["kw"]
                    w = kw.get("num_warps", 4)
                    if kw.get("NG_A"):
                        # word tiles: rows x (Philox groups of the chunks) x warps
                        chunks = "+".join([str(kw["NG_A"])] * kw["NUM_CHUNKS"]
                                          + [str(kw[k]) for k in ("NG_B", "NG_C") if kw[k]])
                        launch["config"] = f"{kw['BLOCK_R']}x({chunks})gx{w}"
                    elif "BLOCK_R" in kw:
                        launch["config"] = f"{kw['BLOCK_R']}x{kw['BLOCK_V']}x{w}"
                    else:
                        launch["config"] = f"{kw['BLOCK']}x{w}"
                    if kw.get("OUT_EMB") or kw.get("FUSED_EMB"):  # the embedding variants
                        launch["config"] += " emb"
                    launch["shape"] = dict(R=R, V=V, dtype=dt)
                    out.append(launch)
    finally:
        ops._config, ops._word_config, ops._interpreted = config, word_config, interpreted
    return out


def _bind(launch: dict, backend):
    """(bound args, specialization, options) of a recorded launch, as ``JITFunction.run`` binds
    it: the specialization is the key its cache compiles on."""
    from triton.runtime.jit import create_function_from_signature

    fn = launch["fn"]
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    return binder(*launch["args"], **launch["kw"])


def _binary_key(launch: dict, backend) -> str:
    """What triton's JIT cache compiles a launch on: its specialization and its constexpr and
    launch options. Two launches with one key run one binary."""
    _, specialization, _ = _bind(launch, backend)
    # tensors passed by keyword (a DeviceSeed's SEED) are in the specialization, as pointers
    options = sorted((k, v) for k, v in launch["kw"].items() if not isinstance(v, torch.Tensor))
    return repr((launch["fn"].__name__, specialization, options))


def rollout_variants(steps: int = 33, arch: int = 90) -> dict:
    """Distinct compiled variants per attention kernel and query length over a growing context.

    ``steps`` one-token steps (T = 1) and as many 64-token segments (T = 64), the memory M growing
    by one each time, forward and backward with dropout, at the default tiles: each launch is
    bound the way ``JITFunction.run`` binds it, and the variants are the distinct (specialization,
    constexprs) keys its cache compiles on. One per kernel and T means the context's growth never
    triggers a compile.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    from tgan.ops.rel_attention import kernel as kern
    from tgan.ops.rel_attention import triton as impl

    backend = make_backend(GPUTarget("cuda", arch, 32))
    os.environ["TGAN_TRITON_CONFIG"] = "default"
    keys: dict = {}
    B, H, D = 2, 2, 16
    try:
        for T in (1, 64):
            for M in range(100, 100 + steps):
                L = M + T
                q = torch.randn(B, T, H, D)
                k, v = torch.randn(B, L, H, D), torch.randn(B, L, H, D)
                r = torch.randn(L, H, D)
                u = vb = torch.randn(H, D)
                seed = impl._draw_seed()

                def run():
                    o, lse = impl.rel_attention_fwd(q, k, v, r, u, vb, 0.25, 0.1, seed)
                    impl.rel_attention_bwd(torch.randn_like(o), q, k, v, r, u, vb, o, lse, 0.25, 0.1, seed)
                for launch in _record(kern, run, f"T={T}"):
                    keys.setdefault(f"{launch['fn'].__name__} T={T}", set()).add(
                        _binary_key(launch, backend))
    finally:
        os.environ.pop("TGAN_TRITON_CONFIG", None)
    return {name: len(v) for name, v in sorted(keys.items())}


def one_token_splits(arch: int = 90) -> list[dict]:
    """A one-token forward (M = 1024, bf16, default tiles) compiled unsplit and with the key splits
    an H200 would take (``h200_fwd_splits``), per (batch, heads, head size) case: splits, grid,
    registers, spills and the modelled times (``estimate``: ESTIMATES)."""
    from tgan.ops.rel_attention import kernel as kern
    from tgan.ops.rel_attention import triton as impl

    cases = [(4, 4, 64, 0.0), (4, 4, 64, 0.1), (16, 4, 64, 0.0), (32, 4, 64, 0.0), (64, 4, 64, 0.0),
             (8, 10, 50, 0.0)]  # B, H, D, dropout
    saved = impl._fwd_splits
    os.environ["TGAN_TRITON_CONFIG"] = "default"
    out = []
    try:
        for B, H, D, p in cases:
            M = 1024
            L = M + 1
            q = torch.randn(B, 1, H, D, dtype=torch.bfloat16)
            k, v = (torch.randn(B, L, H, D, dtype=torch.bfloat16) for _ in range(2))
            r = torch.randn(L, H, D, dtype=torch.bfloat16)
            u = vb = torch.randn(H, D, dtype=torch.bfloat16)
            case = f"decode B={B} H={H} D={D}" + (f" dropout {p}" if p else "")
            for split in (False, True):
                impl._fwd_splits = h200_fwd_splits if split else (lambda *a, **kw: 1)
                (launch,) = _record(kern, lambda: impl.rel_attention_fwd(q, k, v, r, u, vb, D ** -0.5,
                                                                         p, 1), case)
                launch["config"], launch["shape"] = "default", dict(B=B, T=1, M=M, H=H, D=D)
                m = measure(compile_launch(launch, arch), arch)
                out.append({"case": case, "splits": launch["kw"].get("n_split", 1),
                            "grid": list(_grid(launch)), "registers": m["registers"],
                            "spill_bytes": m["spill_bytes"], **estimate(launch, m)})
                print(json.dumps(out[-1]), flush=True)
    finally:
        impl._fwd_splits = saved
        os.environ.pop("TGAN_TRITON_CONFIG", None)
    return out


# ------------------------------------------------------------------------------------ compiling


def _tool(name: str) -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise SystemExit(f"compile_report: {path} not found (triton's NVIDIA backend ships it)")
    return str(path)


def compile_launch(launch: dict, arch: int):
    """triton.compile of one recorded launch for sm_<arch>, the way JITFunction.run would."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile, make_backend

    fn, kw = launch["fn"], dict(launch["kw"])
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    bound, specialization, options = _bind(launch, backend)
    options, signature, constexprs, attrs = fn._pack_args(backend, kw, bound, specialization, options)
    return compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                   options=options.__dict__)


def _ptxas(arch: int) -> str:
    """The ptxas triton itself assembles with for this arch (its PTX version needs that one)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path
    except (ImportError, AttributeError):  # older triton: one ptxas in the wheel
        return _tool("ptxas")


_PTXAS = re.compile(r"Used (\d+) registers")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SASS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def measure(kernel, arch: int) -> dict:
    """Registers and spills (ptxas -v), and SASS counts (cuobjdump) of a compiled kernel."""
    with tempfile.TemporaryDirectory() as d:
        ptx, cubin = Path(d) / "k.ptx", Path(d) / "k.cubin"
        ptx.write_text(kernel.asm["ptx"])
        cubin.write_bytes(kernel.asm["cubin"])
        sm = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        v = subprocess.run([_ptxas(arch), f"-arch={sm}", "-v", str(ptx), "-o", str(Path(d) / "o")],
                           capture_output=True, text=True)
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True,
                              text=True).stdout
    report = v.stderr + v.stdout
    if v.returncode != 0:
        raise SystemExit(f"compile_report: ptxas failed on {kernel.name}: {report.strip()[-400:]}")
    regs = _PTXAS.search(report)
    stack = _STACK.search(report)
    instrs = [(int(a, 16), text) for a, text in _SASS.findall(sass)]
    instrs = [(a, t) for a, t in instrs if not t.startswith("NOP")]
    loops = []
    for addr, text in instrs:
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            loops.append((int(m.group(1), 16), addr))
    inner = [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)]
    loop_n, loop_mma, loop_bytes = 0, 0, 0
    for s, e in inner:
        body = [t for a, t in instrs if s <= a <= e]
        if len(body) > loop_n:
            loop_n, loop_mma = len(body), sum(_mma_flops_per_warp(t) for t in body)
            loop_bytes = sum(_global_bytes_per_warp(t) for t in body)
    return {
        "registers": int(regs.group(1)) if regs else None,
        "stack_bytes": int(stack.group(1)) if stack else None,
        "spill_bytes": int(stack.group(2)) + int(stack.group(3)) if stack else None,
        "shared_bytes": int(getattr(kernel.metadata, "shared", 0)),
        "instructions": len(instrs),
        "loop_instructions": loop_n,
        "loops": len(inner),
        "mufu": sum(1 for _, t in instrs if "MUFU" in t),
        "wgmma": sum(1 for _, t in instrs if "HGMMA" in t),
        "mma": sum(1 for _, t in instrs if re.search(r"\bHMMA\b", t)),
        "loop_mma_flops_per_warp": loop_mma,
        "mma_flops_per_warp": sum(_mma_flops_per_warp(t) for _, t in instrs),
        "global_bytes_per_warp": sum(_global_bytes_per_warp(t) for _, t in instrs),
        "loop_global_bytes_per_warp": loop_bytes,
    }


# global-memory instructions: plain and asynchronous (cp.async: LDGSTS) loads, stores, atomics
_GLOBAL_OP = re.compile(r"^(?:@!?U?P\w+\s+)?(LDGSTS|LDG|STG|REDG?|ATOMG?)\.(\S*)")
_WIDTH = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


def _global_bytes_per_warp(text: str) -> int:
    """Bytes one warp's issue of this SASS instruction moves to or from global memory, every lane
    active: 32 x its width (.U8/.S8 1, .U16/.S16 2, none 4, .64 8, .128 16 bytes). Predicated-off
    lanes and cache hits are not known from the binary, so the sum is the traffic the instructions
    ask for, an upper bound of what reaches L2."""
    m = _GLOBAL_OP.match(text)
    if not m:
        return 0
    width = 4
    for part in m.group(2).split("."):
        width = _WIDTH.get(part, width)
    return 32 * width


def _mma_flops_per_warp(text: str) -> int:
    """FLOPs one warp's issue of this SASS instruction contributes: an mma.sync (HMMA.16816 =
    m16 n8 k16) is the warp's own; a wgmma (HGMMA.64x128x16) is issued by the 4 warps of its
    warpgroup together, so each issue is a quarter of its 64 x N x K product."""
    m = re.search(r"\bHGMMA\.(\d+)x(\d+)x(\d+)", text)
    if m:
        return 2 * int(m.group(1)) * int(m.group(2)) * int(m.group(3)) // 4
    m = re.search(r"\bHMMA\.(16)(8)(\d+)", text)
    if m:
        return 2 * 16 * 8 * int(m.group(3))
    return 0


# ------------------------------------------------------------------------------------ estimates


def _grid(launch) -> tuple[int, int, int]:
    g = launch["grid"]
    g = tuple(g) + (1,) * (3 - len(g))
    return g[0], g[1], g[2]


# Products one iteration of each attention kernel's innermost loop needs, in units of a
# [BLOCK_M, BLOCK_N] x BLOCK_D product: forward Q·K^T, the relative product over a 2·BLOCK_N window,
# P·V; dk/dv the recomputed scores (3), dO·V^T, dV, dK; dq those four, dS·K and the windowed
# dS·R (2); dr the windowed Q·K^T (2), Q·R^T, the windowed dO·V^T (2), dS^T·Q; the fused backward
# the scores (3), dO·V^T, dV, dK, dS·K, the windowed dS·R (2) and dr's window dS^T·Q (2).
_LOOP_PRODUCTS = {"rel_attention_fwd_kernel": 4, "rel_attention_bwd_dkdv_kernel": 6,
                  "rel_attention_bwd_dq_kernel": 7, "rel_attention_bwd_dr_kernel": 6,
                  "rel_attention_bwd_fused_kernel": 11}
# ... and with ONE_QUERY (a one-token step reads r, and the dr pass K and V, by key: every window
# product is [BM, BN] wide, not [BM, 2BN])
_LOOP_PRODUCTS_ONE_QUERY = {"rel_attention_fwd_kernel": 3, "rel_attention_bwd_dkdv_kernel": 5,
                            "rel_attention_bwd_dq_kernel": 5, "rel_attention_bwd_dr_kernel": 4,
                            "rel_attention_bwd_fused_kernel": 8}


# Products of the op's own work each attention kernel must do, in units of one [T, L] x D product
# over the visible (query, key) pairs: the forward Q·K^T, Q·R^T and P·V; dk/dv the scores (2), dO·V^T,
# dV and dK; dq the scores, dO·V^T, dS·K and dS·R; dr the scores, dO·V^T and dS^T·Q; the fused
# backward the scores, dO·V^T and its five gradient products once. The backward as a whole needs 8.
_NEEDED_PRODUCTS = {"rel_attention_fwd_kernel": 3, "rel_attention_bwd_dkdv_kernel": 5,
                    "rel_attention_bwd_dq_kernel": 5, "rel_attention_bwd_dr_kernel": 4,
                    "rel_attention_bwd_fused_kernel": 8}
BACKWARD_PRODUCTS = 8


def needed_work(name: str, shape: dict, elem: int = 2) -> tuple[int, int] | None:
    """(FLOPs, bytes) attention kernel ``name`` must do at ``shape`` (B, T, M, H, D): its products
    over the visible pairs only (no padding of D, no masked tile halves), and each tensor it needs
    read or written once (q, k, v, r's M+T rows, and for the backward dO, the log-sum-exp and
    delta; the outputs in the inputs' dtype of ``elem`` bytes). None for other kernels."""
    if name not in _NEEDED_PRODUCTS:
        return None
    B, T, M, H, D = (shape[k] for k in ("B", "T", "M", "H", "D"))
    L = M + T
    pairs = B * H * (T * M + T * (T + 1) // 2)
    flops = _NEEDED_PRODUCTS[name] * 2 * pairs * D
    q, kv, r, rows = B * T * H * D * elem, B * L * H * D * elem, L * H * D * elem, B * H * T * 4
    if name == "rel_attention_fwd_kernel":
        return flops, q + 2 * kv + r + q + rows  # q, k, v, r in; o and the log-sum-exp out
    reads = q + 2 * kv + r + q + 2 * rows  # q, k, v, r, dO, log-sum-exp, delta
    writes = {"rel_attention_bwd_dkdv_kernel": 2 * kv, "rel_attention_bwd_dq_kernel": q,
              "rel_attention_bwd_dr_kernel": r, "rel_attention_bwd_fused_kernel": q + 2 * kv + r}
    return flops, reads + writes[name]


def estimate(launch: dict, m: dict) -> dict:
    """Issue-time model over the grid vs the byte floor, and executed against needed work (all
    ESTIMATES, see the module docstring)."""
    name = launch["fn"].__name__
    warps = launch["kw"].get("num_warps", 4)
    programs = 1
    for g in _grid(launch):
        programs *= g
    per_warp = m["instructions"] + 7 * m["mufu"]  # MUFU: 8 issue cycles for a warp (16 lanes/clk/SM)
    est = {}
    needed = needed_work(name, launch["shape"]) if "T" in launch["shape"] else None
    if needed and m["loop_instructions"]:
        s = launch["shape"]
        bm, bn = launch["kw"]["BLOCK_M"], launch["kw"]["BLOCK_N"]
        T, M = s["T"], s["M"]
        if "dkdv" in name or "fused" in name:  # per key tile, the query tiles that see it, on average
            tiles = (T * M + T * T / 2) / (M + T) / bm
        elif "dr" in name:  # per distance tile, every query tile of every batch entry of the split
            tiles = -(-T // bm) * launch["args"][-1]
        else:  # per query tile, the visible key tiles (a split one-token forward: its share)
            tiles = (M + T / 2) / bn / launch["kw"].get("n_split", 1)
        extra = max(0.0, tiles - 1)  # loop iterations beyond the one the static count holds
        per_warp += m["loop_instructions"] * extra
        if m["loop_mma_flops_per_warp"]:
            products = (_LOOP_PRODUCTS_ONE_QUERY if launch["kw"].get("ONE_QUERY")
                        else _LOOP_PRODUCTS)[name]
            tile_work = products * 2 * bm * bn * launch["kw"]["BLOCK_D"]
            est["mma_work_over_tile"] = round(m["loop_mma_flops_per_warp"] * warps / tile_work, 2)
        # executed: the binary's MMA FLOPs and global-memory bytes over the grid's loop trips
        est["executed_flops"] = round((m["mma_flops_per_warp"] + m["loop_mma_flops_per_warp"] * extra)
                                      * warps * programs)
        est["executed_bytes"] = round((m["global_bytes_per_warp"]
                                       + m["loop_global_bytes_per_warp"] * extra) * warps * programs)
        est["needed_flops"], est["needed_bytes"] = needed
        est["executed_over_needed_flops"] = round(est["executed_flops"] / needed[0], 2)
        est["executed_over_needed_bytes"] = round(est["executed_bytes"] / needed[1], 2)
    elif m["loop_instructions"] and launch["kw"].get("NUM_CHUNKS", 1) > 1 and "gumbel_st" in name:
        per_warp += m["loop_instructions"] * m["loops"] * (launch["kw"]["NUM_CHUNKS"] - 1)
    cycles = per_warp * warps * programs / (H200_SMS * 4)
    est["est_issue_us"] = round(cycles / H200_CLOCK * 1e6, 1)
    # a program's warps run on one SM: its own instructions bound it however few programs there
    # are (two warps to a scheduler beyond 4 warps); a grid of fewer programs than SMs leaves
    # the rest idle, which the issue time above, spread over every SM, does not see
    program = per_warp * -(-warps // 4) / H200_CLOCK * 1e6
    est["est_program_us"] = round(program, 1)
    est["est_time_us"] = round(max(est["est_issue_us"], program), 1)
    if name in ("gumbel_st_fwd_kernel", "gumbel_st_bwd_kernel") and not launch["kw"].get("OUT_EMB") \
            and not launch["kw"].get("FUSED_EMB"):
        R, V = launch["args"][5], launch["args"][6]
        dtype = launch["shape"]["dtype"].replace("torch.", "")
        elem = 2 if dtype == "bfloat16" else 4
        nbytes = (2 * R * V * elem + 8 * R) if "fwd" in name else 3 * R * V * elem
        bw = COPY_BW.get((dtype, V), COPY_BW_OTHER) if R == 131072 else COPY_BW_OTHER
        floor_us = nbytes / bw * 1e6
        est["needed_flops"], est["needed_bytes"] = 0, nbytes
        est["floor_us"] = round(floor_us, 1)
        est["est_over_floor"] = round(cycles / H200_CLOCK * 1e6 / floor_us, 2)
    return est


# ------------------------------------------------------------------------------------ main


def _use(kernel: str, cfg: str, launch: dict) -> str:
    """How the launcher uses this config: "default" (pinned), "autotune" (may pick it), "no"."""
    from tgan.ops.rel_attention import triton as impl

    if kernel not in impl._DEFAULT_CONFIGS:
        return "default"  # the Gumbel launchers and the mask kernel: one config per shape
    tiles = tuple(int(x) for x in cfg.split("x"))
    decode = launch["shape"]["T"] <= 16
    default = (impl._DECODE_DEFAULTS if decode else impl._DEFAULT_CONFIGS)[kernel]
    if tiles == default:
        return "default"
    allowed = (impl._KERNEL_DECODE_CONFIGS if decode else impl._KERNEL_CONFIGS)[kernel]
    return "autotune" if tiles in allowed else "no"


def run(arch: int, default_only: bool, only: str | None = None) -> list[dict]:
    """Compile and measure every launch (``only``: the kernels whose name contains it)."""
    from tgan.ops.rel_attention import triton as impl

    if default_only:
        configs = ["default"]
    else:
        configs = [f"{bm}x{bn}x{w}" for bm, bn, w in impl._CONFIGS + impl._DECODE_CONFIGS]
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    backend = make_backend(GPUTarget("cuda", arch, 32))
    launches = rel_attention_launches(configs) + gumbel_launches()
    rows, binaries = [], {}
    for launch in launches:
        kw = launch["kw"]
        name = launch["fn"].__name__
        if only and only not in name:
            continue
        cfg = (f"{kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw.get('num_warps', 4)}" if "BLOCK_M" in kw
               else launch["config"])
        # a launch that binds like an earlier one (the lengths, row counts and seeds are not
        # specialised on) runs that binary, so it is not compiled again; its case is listed
        # under the row that was
        key = _binary_key(launch, backend)
        if key in binaries:
            row = binaries[key]
            if launch["case"] != row["case"] and launch["case"] not in row["same_binary"]:
                row["same_binary"].append(launch["case"])
            continue
        print(f"compiling {name} [{cfg}] ({launch['case']})", file=sys.stderr, flush=True)
        m = measure(compile_launch(launch, arch), arch)
        binaries[key] = row = {"kernel": name, "config": cfg, "case": launch["case"],
                               "shape": launch["shape"], "same_binary": [], "arch": f"sm_{arch}",
                               "use": _use(name, cfg, launch), **m, **estimate(launch, m)}
        rows.append(row)
    return rows


def _case_cell(row: dict) -> str:
    """The row's case, and the cases that run the same binary (their lengths differ, nothing the
    compiler sees): "bench T=M=512 H=8 D=64 (same binary: T=M=128, T=M=2048)"."""
    if not row["same_binary"]:
        return row["case"]
    first = row["case"].split()
    others = [" ".join(w for w, f in zip(c.split(), first + [""] * len(c.split())) if w != f)
              or c for c in row["same_binary"]]
    return f"{row['case']} (same binary: {', '.join(others)})"


def markdown(rows: list[dict]) -> str:
    import triton

    head = ["kernel", "config (tiles x warps)", "used as", "case", "registers", "spill bytes", "stack",
            "shared", "SASS", "innermost loop", "MUFU", "wgmma / mma.sync", "loop MMA work / tile's",
            "estimate: issue time", "estimate: one program", "estimate: floor", "estimate / floor",
            "estimate: executed / needed FLOPs", "estimate: executed / needed bytes"]
    lines = [f"Compiled for {rows[0]['arch'] if rows else '-'} with triton {triton.__version__} "
             f"(`python benchmarks/compile_report.py`). Issue times and floors are ESTIMATES.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in (
            r["kernel"], r["config"], r["use"], _case_cell(r), r["registers"], r["spill_bytes"],
            r["stack_bytes"],
            r["shared_bytes"], r["instructions"], r["loop_instructions"], r["mufu"],
            f"{r['wgmma']} / {r['mma']}",
            f"{r['mma_work_over_tile']}x" if "mma_work_over_tile" in r else "-",
            f"{r.get('est_issue_us', '-')} us", f"{r.get('est_program_us', '-')} us",
            f"{r['floor_us']} us" if "floor_us" in r else "-",
            f"{r['est_over_floor']}x" if "est_over_floor" in r else "-",
            _ratio_cell(r, "flops"), _ratio_cell(r, "bytes"))) + " |")
    summary = backward_summary(rows)
    if summary:
        lines += ["", "The backward per case, its passes together against the op's own work "
                  f"({BACKWARD_PRODUCTS} products over the visible pairs; ESTIMATES):", "",
                  "| case | passes | executed FLOPs | needed FLOPs | executed / needed | "
                  "executed bytes | needed bytes |", "|" + " --- |" * 7]
        for c in summary:
            lines.append(f"| {c['case']} | {c['passes']} | {c['executed_flops']:.3g} | "
                         f"{c['needed_flops']:.3g} | {c['executed_over_needed_flops']}x | "
                         f"{c['executed_bytes']:.3g} | {c['needed_bytes']:.3g} |")
    return "\n".join(lines) + "\n"


def _ratio_cell(r: dict, what: str) -> str:
    if f"executed_{what}" not in r:
        return "-"
    return f"{r[f'executed_{what}']:.3g} / {r[f'needed_{what}']:.3g} = {r[f'executed_over_needed_{what}']}x"


def backward_summary(rows: list[dict]) -> list[dict]:
    """Per case of the report, the backward passes' executed work at their default tiles summed
    against what the whole backward needs (`BACKWARD_PRODUCTS` products; bytes: each input read and
    each gradient written once): what the split into passes, and the tiles, cost."""
    groups: dict = {}
    for r in rows:
        if r["kernel"].startswith("rel_attention_bwd") and "executed_flops" in r \
                and r["use"] == "default":
            backward = "fused" if "fused" in r["kernel"] else "split"  # TGAN_ATTN_BWD
            groups.setdefault((r["case"], backward), []).append(r)
    out = []
    for (case, _), rs in groups.items():
        shape = rs[0]["shape"]
        flops, nbytes = needed_work("rel_attention_bwd_fused_kernel", shape)
        ex_f = sum(r["executed_flops"] for r in rs)
        out.append({"case": case,
                    "passes": " + ".join(sorted(r["kernel"].split("_bwd_")[1].replace("_kernel", "")
                                                for r in rs)),
                    "executed_flops": ex_f, "needed_flops": flops,
                    "executed_over_needed_flops": round(ex_f / flops, 2),
                    "executed_bytes": sum(r["executed_bytes"] for r in rs), "needed_bytes": nbytes})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/compile_report.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="sm_90", help="target, e.g. sm_90 (default), sm_80")
    p.add_argument("--json", default=None, metavar="F", help="write the rows as JSON here")
    p.add_argument("--markdown", default=None, metavar="F", help="write the table here")
    p.add_argument("--default-only", action="store_true",
                   help="only the configs TGAN_TRITON_CONFIG=default runs (one per kernel)")
    p.add_argument("--only", default=None, metavar="NAME",
                   help="compile only the kernels whose name contains NAME (e.g. bwd_fused)")
    p.add_argument("--rollout-variants", action="store_true",
                   help="count the variants a growing context compiles per kernel, compile nothing")
    p.add_argument("--one-token-splits", action="store_true",
                   help="a one-token forward split over keys against unsplit, modelled side by side")
    args = p.parse_args(argv)
    m = re.fullmatch(r"sm_(\d+)a?", args.arch)
    if not m:
        p.error(f"--arch must look like sm_90, got {args.arch!r}")
    if args.rollout_variants:
        counts = rollout_variants(arch=int(m.group(1)))
        print(json.dumps(counts, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(counts, indent=1))
        return 0
    if args.one_token_splits:
        rows = one_token_splits(int(m.group(1)))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    rows = run(int(m.group(1)), args.default_only, args.only)
    text = markdown(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
