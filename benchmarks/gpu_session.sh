#!/usr/bin/env bash
# One complete first run on a CUDA machine inside a fixed time budget, for a lease of minutes:
#
#   OUT=DIR BUDGET=400 bash benchmarks/gpu_session.sh [STAGE ...]   (default: all, in this order)
#
# Builds nothing with pip: PYTHONPATH points at the source tree, while the C++ extension builds in
# the background (`setup.py build_ext --inplace`). Then, each stage capped by what is left of BUDGET seconds (a stage that would not fit is skipped, and a
# stage past its cap is stopped, so the run always reaches the end and packs its logs):
#   tests       `pytest -m gpu` with TGAN_TRITON_CONFIG=default (one compile per kernel and
#               specialization, no autotuning), in three parallel processes; the KV-cache GPU tests
#               once the extension is built
#   gumbel      bench_gumbel_softmax                     -> gumbel.json
#   attention   bench_rel_attention, every provider (eager, reference, sdpa, triton with the
#               pinned tiles, flex, compiled) in one process -> attention.json
#   autotune    the triton provider at T = 512 with the autotuner (records its pick) -> autotune.json
#   kv_cache    bench_kv_cache: appends, and decode steps at S = 256 -> kv_cache.json
#   adversarial bench_adversarial_step at rollouts of 256 and 2048 tokens -> adversarial.json
#   fusion      the fused-backward targets in one process, under 5 minutes: bench_rel_attention
#               at T = 512 and 2048 (triton with both backwards, compiled eager, flex, sdpa; fwd,
#               bwd, fwd+bwd), at the paper's shape with dropout, and a decode step's one query
#               over 1024 positions (test_rel_attention_one_token), then bench_gumbel_softmax at
#               R = 131072 -> fusion-attention.json, fusion-gumbel.json (not in the default list:
#               `bash benchmarks/gpu_session.sh fusion`)
#   paths       bench_adversarial_step's test_adversarial_step_paths (segment sums against
#               per-token weight gradients, batch 4, 16, 64, rollouts of 256 and 2048) and
#               test_decode_modes (eager, static, graph) -> paths.json (not in the default list)
#   one_token   a rollout token step's attention fwd+bwd (one query over 1024 positions with
#               gradient and dropout: test_rel_attention_one_token_grad, both Triton backwards,
#               compiled eager, sdpa) and the decode step's forward -> one-token.json
#               (not in the default list: `bash benchmarks/gpu_session.sh one_token`)
#   rollouts    issue-sized rollout figures in one process, under 8 minutes, on a cold Triton cache
#               (an empty TRITON_CACHE_DIR): benchmarks/rollout_probe.py, small preset, decode
#               tokens/s at batch 4, 16 and 64, then adversarial steps (differentiable rollout +
#               D + backward) at rollouts of 256 and 2048 tokens per batch: the first step's time
#               (cold: the compiles) and every step warm, tokens/s, peak memory, kernels compiled;
#               at batch 4 also the per-token weight-gradient path beside the segment sums;
#               and steady-state decode steps eager against TGAN_DECODE=graph (one CUDA graph per
#               token) at each batch
#               -> logs/rollouts.probe (JSON; not pytest-benchmark's, so report.py leaves it out)
#               (not in the default list: `BUDGET=500 bash benchmarks/gpu_session.sh rollouts`)
#   report      benchmarks/report.py over the JSON files -> report.md
# Everything lands in $OUT/session.tgz (plus env.txt, report.md and summary.txt beside it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
BUDGET=${BUDGET:-400}
LOGS="$OUT/logs"
mkdir -p "$LOGS"
START=$SECONDS
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
export TGAN_TRITON_CONFIG=${TGAN_TRITON_CONFIG:-default}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

left() { echo $((BUDGET - (SECONDS - START))); }
note() { echo "$*" | tee -a "$SUMMARY"; }

stage() {  # stage NAME CAP COMMAND...: run COMMAND for at most min(CAP, time left - 15) seconds
    local name=$1 cap=$2
    shift 2
    local t=$(($(left) - 15))
    [ "$t" -lt "$cap" ] || t=$cap
    if [ "$t" -lt 20 ]; then
        note "$name: skipped (only $(left)s of the budget left)"
        return 0
    fi
    local s0=$SECONDS
    timeout -k 5 "$t" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    note "$name: rc=$rc in $((SECONDS - s0))s (cap ${t}s): $(tail -n 1 "$LOGS/$name.log")"
}

bench() {  # bench NAME CAP MAXTIME PYTEST-ARGS...
    local name=$1 cap=$2 maxtime=$3
    shift 3
    stage "$name" "$cap" pytest "$@" --benchmark-only --benchmark-json="$LOGS/$name.json" \
        --benchmark-max-time="$maxtime" -p no:cacheprovider -v
}

OUT="$LOGS" TGAN_RUN_NO_BUILD=1 bash benchmarks/run.sh env > /dev/null 2>&1
cp "$LOGS/env.txt" "$OUT/env.txt"
(python setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; echo "build rc=$?" >> "$LOGS/build.log") &

gpu_tests() {
    trap 'kill $(jobs -p) 2>/dev/null' TERM EXIT  # a stage stopped at its cap leaves nothing running
    # three shards whose -k expressions cover every gpu-marked test outside the KV-cache file
    # between them (bf16, fp16, the rest), so a new GPU test is never left out
    local kv=tests/ops/test_kv_cache.py
    pytest -m gpu -p no:cacheprovider -q -rs tests --ignore="$kv" -k "bfloat16" \
        > "$LOGS/tests-bf16.log" 2>&1 &
    local p1=$!
    pytest -m gpu -p no:cacheprovider -q -rs tests --ignore="$kv" -k "float16 and not bfloat16" \
        > "$LOGS/tests-fp16.log" 2>&1 &
    local p2=$!
    pytest -m gpu -p no:cacheprovider -q -rs tests --ignore="$kv" -k "not float16" \
        > "$LOGS/tests-rest.log" 2>&1
    local rc=$?
    wait $p1 || rc=1
    wait $p2 || rc=1
    until grep -q "build rc=" "$LOGS/build.log" 2>/dev/null; do sleep 1; done  # not our child
    pytest -m gpu -p no:cacheprovider -q -rs "$kv" > "$LOGS/tests-kv.log" 2>&1 \
        || rc=1
    tail -n 1 "$LOGS"/tests-*.log
    return $rc
}
export -f gpu_tests
export LOGS
[ $# -gt 0 ] || set -- tests gumbel attention autotune kv_cache adversarial
for name in "$@"; do
    case $name in
        tests)
            stage tests 150 bash -c gpu_tests
            grep -h -E "FAILED|ERROR|passed|failed" "$LOGS"/tests-*.log | tee -a "$SUMMARY"
            ;;
        gumbel) bench gumbel 60 0.1 benchmarks/bench_gumbel_softmax.py ;;
        attention)  # every provider in one process: the ratios come from one run
            bench attention 170 0.2 benchmarks/bench_rel_attention.py -k "not one_token_grad" ;;
        autotune)
            TGAN_TRITON_CONFIG=autotune bench autotune 45 0.2 benchmarks/bench_rel_attention.py \
                -k "triton and 512" ;;
        kv_cache) bench kv_cache 50 0.2 benchmarks/bench_kv_cache.py -k "append or 256" ;;
        adversarial)
            bench adversarial 70 0.2 benchmarks/bench_adversarial_step.py -k "256 or 2048" ;;
        fusion)
            bench fusion-attention 210 0.2 benchmarks/bench_rel_attention.py -k \
                "paper_shape or (one_token and not grad) or (test_rel_attention and (512 or 2048) and not eager and not reference)"
            bench fusion-gumbel 75 0.1 benchmarks/bench_gumbel_softmax.py -k "131072" ;;
        paths)  # pytest-benchmark beside the probe: both gradient paths and every decode mode
            bench paths 420 0.1 benchmarks/bench_adversarial_step.py -k "paths or decode_modes" ;;
        one_token)  # a rollout token step's attention, fwd+bwd, and a decode step's forward
            bench one-token 150 0.2 benchmarks/bench_rel_attention.py -k "one_token" ;;
        rollouts)  # a cold cache of its own: the first adversarial step pays every compile
            TRITON_CACHE_DIR="$(mktemp -d)" stage rollouts 480 python benchmarks/rollout_probe.py \
                --preset small --batches 4,16,64 --rollouts 256,2048 --old-path-batches 4 \
                --decode-modes eager,graph \
                --json "$LOGS/rollouts.probe" ;;
        *) note "unknown stage '$name'"; exit 2 ;;
    esac
done
tail -n 2 "$LOGS/build.log" | tee -a "$SUMMARY"

shopt -s nullglob
jsons=()
for f in "$LOGS"/*.json; do [ -s "$f" ] && jsons+=("$f"); done  # a stage stopped at its cap writes none
if [ ${#jsons[@]} -gt 0 ]; then
    python benchmarks/report.py "${jsons[@]}" > "$OUT/report.md" 2> "$LOGS/report.log"
    note "report: rc=$? ($OUT/report.md)"
fi
note "total: $((SECONDS - START))s of ${BUDGET}s"
tar -czf "$OUT/session.tgz" -C "$OUT" logs && rm -rf "$LOGS"
