"""watch_triton_compiles / triton_compiles: the count and time of Triton compiles that the trainer
logs per stage and for its first adversarial iteration, and writes to summary.json.

A GPU compiles through triton's JIT; here a kernel is compiled for sm_90 offline (triton's own
compiler, no GPU), which goes through the same listener. In subprocesses: the test session runs
with TRITON_INTERPRET=1, under which nothing compiles."""
import json
import os
import subprocess
import sys

import pytest

COMMON = """
import json, os
os.environ["TRITON_INTERPRET"] = "0"
import triton, triton.language as tl
from tgan.ops import watch_triton_compiles, triton_compiles

@triton.jit
def add_one(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1.0, mask=offs < n)
"""

LISTENER = COMMON + """
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
how = watch_triton_compiles()
assert watch_triton_compiles() == how  # idempotent: one listener
src = ASTSource(add_one, {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}, {"BLOCK": 16})
before = triton_compiles()
triton.compile(src, target=GPUTarget("cuda", 90, 32))
first = triton_compiles()
triton.compile(src, target=GPUTarget("cuda", 90, 32))  # the same kernel: from the disk cache
print(json.dumps([how, before, first, triton_compiles()]))
"""

HOOKS = COMMON + """
import time
triton.knobs.compilation = None  # a release without the compilation listener
seen = []
triton.knobs.runtime.jit_post_compile_hook = lambda **kw: seen.append(kw["key"])  # a user's hook
how = watch_triton_compiles()
key = ("add_one", "spec")
assert not triton.knobs.runtime.jit_cache_hook(key=key, repr="", fn=None, compile={}, is_manual_warmup=False,
                                               already_compiled=False)  # False: compile it
time.sleep(0.05)
triton.knobs.runtime.jit_post_compile_hook(key=key, repr="", fn=None, compile={}, is_manual_warmup=False,
                                           already_compiled=False)
print(json.dumps([how, triton_compiles(), seen == [list(key)] or seen == [key]]))
"""


def _run(code, tmp_path):
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_DEFAULT_FP_FUSION="1")
    env.pop("TRITON_INTERPRET", None)
    script = tmp_path / "compiles.py"  # a file: triton.jit reads the kernel's source
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_compiles_are_counted_and_timed_and_disk_cache_loads_are_not_compiles(tmp_path):
    how, before, first, second = _run(LISTENER, tmp_path)
    if how != "listener":
        pytest.skip(f"this triton has no compilation listener ({how})")
    assert before == {"compiled": 0, "cache_hits": 0, "seconds": 0.0}
    assert first["compiled"] == 1 and first["cache_hits"] == 0 and first["seconds"] > 0.01
    assert second["compiled"] == 1 and second["cache_hits"] == 1 and second["seconds"] == first["seconds"]


def test_without_the_listener_the_jit_hooks_count_and_time_each_compile(tmp_path):
    how, counts, chained = _run(HOOKS, tmp_path)
    assert how == "hooks"
    assert counts["compiled"] == 1 and counts["seconds"] >= 0.05
    assert chained  # the hook installed before is still called
