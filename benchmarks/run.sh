#!/usr/bin/env bash
# The complete measurement run of a machine, in stages of at most ten minutes each on a GPU:
#
#   bash benchmarks/run.sh STAGE [STAGE ...]      STAGE: env tests gumbel attention system report
#
#   env        print the machine record ($OUT/env.txt, written before every stage list)
#   tests      `TRITON_INTERPRET=0 pytest -m gpu`: the compiled kernels and the CUDA cache
#              against the references (skipped without CUDA),
#              with TGAN_TRITON_CONFIG=default unless set: one config per kernel, no autotuning,
#              so the compiles are bounded (about 40 rel_attention specializations x 1 config;
#              55 s on the H200 with the build, in gpu_session.sh's three parallel processes);
#              stopped at $TESTS_TIMEOUT s (default 300)
#   gumbel     benchmarks/bench_gumbel_softmax.py        -> $OUT/gumbel.json
#   attention  benchmarks/bench_rel_attention.py         -> $OUT/attention.json
#   system     bench_kv_cache, bench_rollout, bench_adversarial_step -> $OUT/system.json
#   report     benchmarks/report.py over every $OUT/*.json -> $OUT/report.md (tables + targets)
#              (where the stages ran with separate output folders, gather their JSON files and run
#              `python benchmarks/report.py DIR/*.json` instead)
#
# Every stage logs to $OUT/<stage>.log (OUT defaults to ./bench-out) and records the machine
# (nvidia-smi, versions) in $OUT/env.txt. The package is built with
# `pip install --no-build-isolation --no-deps -e .` when `import torch, tgan._C` fails (set
# TGAN_RUN_NO_BUILD=1 to skip that). Extra pytest options: $BENCH_OPTS (default
# `--benchmark-max-time=0.5`, keeping a GPU stage within its ten minutes). A benchmark stage still
# running after $STAGE_TIMEOUT s (default 600) is stopped (SIGTERM, then SIGKILL 10 s later) and
# counted as failed (exit 124 or 137); its log keeps what it measured until then. The build, when
# there is one, runs before the first stage and outside these limits.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
BENCH_OPTS=${BENCH_OPTS:---benchmark-max-time=0.5}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-600}
TESTS_TIMEOUT=${TESTS_TIMEOUT:-300}
export TRITON_INTERPRET=0
status=0

environment() {
    {
        date -u +"%Y-%m-%dT%H:%M:%SZ"
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
        python - <<'EOF'
import platform, sys
import torch
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton not installed")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs",
          f"{p.total_memory / 2**30:.1f} GiB")
EOF
    } > "$OUT/env.txt" 2>&1
}

build() {
    if [ "${TGAN_RUN_NO_BUILD:-0}" = 1 ] || python -c "import torch, tgan._C" 2>/dev/null; then
        return 0
    fi
    echo "building: pip install --no-build-isolation --no-deps -e . (log: $OUT/build.log)"
    if ! pip install -v --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
        tail -n 40 "$OUT/build.log"
        echo "build failed"
        exit 1
    fi
    grep -E "tgan setup:" "$OUT/build.log" || true
}

# stopped RC WHAT LIMIT VARIABLE: say so when `timeout` stopped a stage (124; 137: killed)
stopped() {
    [ "$1" -ne 124 ] && [ "$1" -ne 137 ] || echo "$2: stopped at the limit of ${3}s ($4)"
}

bench() {  # bench NAME FILE...
    local name=$1
    shift
    echo "== $name: pytest $* --benchmark-only (log: $OUT/$name.log)"
    # shellcheck disable=SC2086
    timeout -k 10 "$STAGE_TIMEOUT" pytest "$@" --benchmark-only --benchmark-json="$OUT/$name.json" \
        $BENCH_OPTS -p no:cacheprovider -q > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 3 "$OUT/$name.log"
    stopped $rc "$name" "$STAGE_TIMEOUT" STAGE_TIMEOUT
    [ $rc -eq 0 ] || status=$rc
}

[ $# -gt 0 ] || set -- tests gumbel attention system report
environment
build
for stage in "$@"; do
    SECONDS=0
    case $stage in
        env) cat "$OUT/env.txt" ;;
        tests)
            # pinned tiles (one compile per kernel and specialization) unless the caller chose
            echo "== tests: TRITON_INTERPRET=0 pytest -m gpu (log: $OUT/tests.log)"
            TGAN_TRITON_CONFIG=${TGAN_TRITON_CONFIG:-default} timeout -k 10 "$TESTS_TIMEOUT" \
                pytest -m gpu -v -p no:cacheprovider > "$OUT/tests.log" 2>&1
            rc=$?
            grep -E "FAILED|ERROR" "$OUT/tests.log" | head -n 20
            tail -n 1 "$OUT/tests.log"
            stopped $rc tests "$TESTS_TIMEOUT" TESTS_TIMEOUT
            # exit 5: nothing selected (no CUDA: every gpu test is skipped, which is not a failure)
            [ $rc -eq 0 ] || [ $rc -eq 5 ] || status=$rc
            ;;
        gumbel) bench gumbel benchmarks/bench_gumbel_softmax.py ;;
        attention) bench attention benchmarks/bench_rel_attention.py ;;
        system)
            bench system benchmarks/bench_kv_cache.py benchmarks/bench_rollout.py \
                benchmarks/bench_adversarial_step.py
            ;;
        report)
            shopt -s nullglob
            jsons=("$OUT"/*.json)
            if [ ${#jsons[@]} -eq 0 ]; then
                echo "report: no benchmark JSON in $OUT"
                status=1
            else
                python benchmarks/report.py "${jsons[@]}" > "$OUT/report.md" || status=1
                echo "== report: $OUT/report.md"
                sed -n '/^## Targets/,$p' "$OUT/report.md"
            fi
            ;;
        *)
            echo "unknown stage '$stage' (expected: env tests gumbel attention system report)"
            exit 2
            ;;
    esac
    echo "   ($stage: ${SECONDS}s)"
done
exit $status
