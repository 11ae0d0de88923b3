#!/usr/bin/env bash
# Every GPU check of this project in one run, for a machine lent for minutes (the GPU image of
# tools/device-build.sh: .debs/ and .whl/ from tools/device-kit.sh travel with the tree, and build/fixtures too
# when the run should skip making the test fixtures there, ~100 s). The build first (build-device/, sm_90a), then
# the stages GPU_CHECK_STAGES names, in its order:
#   kernels: the kernel tests against the CPU reference; bench: tools/bench_gpu (its experiments beside the
#   defaults first: tools/bench_gpu_summary.py), and bitsandbytes' dequantization on the same shapes; training:
#   the GPU training, generation and eval tests (CPU vs CUDA, or against the oracles); memcheck: compute-sanitizer
#   memcheck of the kernel tests; e2e1b / e2e: end-to-end QLoRA against PEFT + bitsandbytes on the 1B-shaped /
#   8B-shaped Llama (e2e runs the 1B one instead when the 8B model is missing or time is short, and e2e1b did not
#   run); ncu: Nsight Compute on
#   the tensor-core GEMV at its defaults for gate/up (one row of x, bf16, depth 2, blocks of 8 warps;
#   GPU_CHECK_NCU_KERNEL picks another mangled-name pattern), its report to
#   $OUT/ncu-gemv.txt; generate: tools/bench_generate.sh, ours against transformers + bitsandbytes, greedy on an
#   NF4 base (the 8B-shaped Llama where e2e made it, else the 1B-shaped one, made here if missing),
#   GPU_CHECK_GENERATE_TOKENS (default 128) new tokens, then ours alone with AUTOTRAIN_GEMV_GROUP=0, with
#   AUTOTRAIN_GEMV_TILES=0 and with both (the GEMV's two defaults turned off), and profiled over 40 tokens
#   ($OUT/generate-profile.txt: wall time per token beside the kernels', the CPU operators).
#   The random 8B-shaped Llama is made in the background from the start (GPU + disk, while the build uses the
#   CPUs) when e2e is asked for, and the 1B-shaped one when generate is and no end-to-end stage.
#   BENCH_GPU_PROFILE=1 (see tools/bench_gpu.sh) adds both sides' profiles to the end-to-end stages; their
#   summaries go to $OUT.
# Logs and results go to $OUT (default /tmp/gpu-check). GPU_CHECK_SECONDS (default 540) bounds the whole;
# GPU_CHECK_STAGES (default "kernels bench training memcheck e2e") picks stages after the build, run in that order;
# GPU_CHECK_MEMCHECK_SECONDS (default 90) and GPU_CHECK_E2E_SECONDS (default: what is left) bound those stages,
# GPU_CHECK_MEMCHECK_FILTER and GPU_CHECK_TRAINING_FILTER (gtest filters) narrow memcheck and training (the
# latter where build/fixtures travelled);
# GPU_CHECK_BNB_DEQUANTIZE=0 skips bitsandbytes' dequantization after bench_gpu;
# GPU_CHECK_BENCH_SECTIONS (e.g. "gemv matmul") limits bench_gpu to those sections; BENCH_GPU_VARIANTS (see
# tools/bench_gpu.sh, e.g. "AUTOTRAIN_NF4_MATMUL=fused") adds runs of ours to the end-to-end stages, whose run
# settings are GPU_CHECK_E2E_ARGS (default "--lora-dropout 0"; AutoTrain's default dropout is 0.05).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-/tmp/gpu-check}"
BUILD=build-device
BUDGET="${GPU_CHECK_SECONDS:-540}"
START=$SECONDS
mkdir -p "$OUT"
left() { echo $((BUDGET - (SECONDS - START))); }
at_most() { local l; l=$(left); echo $((l < $1 ? l : $1)); }
stage() { echo "=== $1 (t=$((SECONDS - START)) s)"; }
STAGES=" ${GPU_CHECK_STAGES:-kernels bench training memcheck e2e} "
read -r -a BENCH_SECTIONS <<< "${GPU_CHECK_BENCH_SECTIONS:-}"  # bench_gpu sections; none: all
read -r -a E2E_ARGS <<< "${GPU_CHECK_E2E_ARGS:---lora-dropout 0}"  # bench_gpu_peer.py run settings, end to end
wanted() { [[ "$STAGES" == *" $1 "* ]]; }
for name in $STAGES; do  # before any device time is spent
  case "$name" in
    kernels | bench | training | memcheck | ncu | e2e1b | e2e | generate) ;;
    *) echo "gpu-check: GPU_CHECK_STAGES names an unknown stage, $name (kernels bench training memcheck ncu e2e1b e2e generate)" >&2
       exit 2 ;;
  esac
done

nvidia-smi -L
WORK_8B=/tmp/bench-8b
MAKE_8B=
if wanted e2e; then
    (python3 tools/bench_gpu_peer.py make-model --shape 8b --out "$WORK_8B" > "$OUT/make-8b.log" 2>&1; echo "exit $?" >> "$OUT/make-8b.log") &
    MAKE_8B=$!
fi
# generate's 1B-shaped model, made during the build too when no end-to-end stage (which makes its own) is asked for.
WORK_1B=/tmp/bench-1b
MAKE_1B=
if wanted generate && ! wanted e2e && ! wanted e2e1b && [[ ! -f "$WORK_1B/model/config.json" ]]; then
    (python3 tools/bench_gpu_peer.py make-model --shape 1b --out "$WORK_1B" > "$OUT/make-1b.log" 2>&1; echo "exit $?" >> "$OUT/make-1b.log") &
    MAKE_1B=$!
fi

stage build
if ! bash tools/device-build.sh "$BUILD" > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -30
  tail -30 "$OUT/build.log"
  exit 1
fi
# shellcheck disable=SC1091
source "$BUILD/env.sh"
if [[ -d build/fixtures/models && ! -d "$BUILD/fixtures/models" ]]; then cp -r build/fixtures "$BUILD/fixtures"; fi

# Runs the tests of gtest filter $3 in one process for at most $2 seconds into $OUT/$1.log, then shows its exit
# status and its results, failures and worst errors (at most $4 lines).
kernel_tests_run() {
  timeout "$2" "$BUILD/tests/autotrain_tests" --gtest_filter="$3" > "$OUT/$1.log" 2>&1
  echo "$1: exit $?"
  grep -E "^\[  (PASSED|FAILED|  OK|SKIPPED) |Failure|error|Expected|Which is|worst|trace" "$OUT/$1.log" | head -"$4"
}

kernels() {
  stage "kernel tests"
  # The Hopper (wgmma) matmul in a process of its own: a kernel that faults spoils the CUDA context of what follows.
  local kernel_tests='CudaBackend.*:CudaKernels.*:CudaFusedLora.*:FusedLora.*:CudaFusedOps.*:FusedOpsTolerance.*'
  kernel_tests_run kernel-tests 150 "$kernel_tests:-CudaKernels.Wgmma*" 60
  kernel_tests_run wgmma-tests 90 'CudaKernels.Wgmma*' 20
}

# Waits for the background process $1 (if any) to end, at most $2 seconds.
wait_at_most() {
  [[ -n "$1" ]] || return 0
  for _ in $(seq "$2"); do kill -0 "$1" 2>/dev/null || break; sleep 1; done
}

wait_for_8b() {
  [[ -n "$MAKE_8B" ]] || return 0
  stage "make-model 8b: waiting at most 120 s"
  wait_at_most "$MAKE_8B" 120
  tail -2 "$OUT/make-8b.log"
}

bench() {
  if [[ -n "$MAKE_1B" ]] && kill -0 "$MAKE_1B" 2>/dev/null; then  # its GPU work would disturb the timings
    stage "bench_gpu: waiting at most 60 s for make-model 1b"
    wait_at_most "$MAKE_1B" 60
  fi
  stage "bench_gpu"
  timeout "$(at_most 150)" "$BUILD/bench_gpu" "${BENCH_SECTIONS[@]}" > "$OUT/bench_gpu.txt" 2>&1
  echo "bench_gpu: exit $?"
  python3 tools/bench_gpu_summary.py "$OUT/bench_gpu.txt"  # the experiments beside the defaults
  grep -v '^JSON' "$OUT/bench_gpu.txt" | head -80
  if [[ "${GPU_CHECK_BNB_DEQUANTIZE:-1}" == 1 ]]; then
    timeout 60 python3 tools/bench_gpu_peer.py dequantize > "$OUT/dequantize-bnb.txt" 2>&1
    echo "bitsandbytes dequantize: exit $?"
    tail -4 "$OUT/dequantize-bnb.txt"
  fi
}

training() {
  stage "GPU training and generation tests"
  if [[ -d "$BUILD/fixtures/models" ]]; then
    timeout "$(at_most 150)" "$BUILD/tests/autotrain_tests" \
      --gtest_filter="${GPU_CHECK_TRAINING_FILTER:-CudaFrozenLinear.*:CudaTraining.*:*CudaTrainingMatchesCpu*:CudaGenerate.*:EvaluateCuda.*:ImatrixCuda.*:DpoCuda.*:RewardCuda.*:OptimizerCuda.*}" \
      > "$OUT/training-tests.log" 2>&1
  else
    (cd "$BUILD" && timeout "$(at_most 250)" ctest -R 'Cuda|GpuTraining|Device' --output-on-failure) > "$OUT/training-tests.log" 2>&1
  fi
  echo "GPU training tests: exit $?"
  grep -E "^\[  (PASSED|FAILED|  OK|SKIPPED) |Passed|Failed|Failure|Expected|Which is" "$OUT/training-tests.log" | head -40
}

memcheck() {
  stage "memcheck"
  local memcheck_tests='CudaKernels.*Gemv*:CudaKernels.Dequantize*:CudaKernels.Tiles*:CudaKernels.*Matmul*'
  memcheck_tests+=':CudaFusedOps.*:-CudaKernels.Wgmma*'  # the Hopper matmul on its own, below (see kernels)
  timeout "$(at_most "${GPU_CHECK_MEMCHECK_SECONDS:-90}")" compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$BUILD/tests/autotrain_tests" \
    --gtest_filter="${GPU_CHECK_MEMCHECK_FILTER:-$memcheck_tests}" \
    > "$OUT/memcheck.log" 2>&1
  echo "memcheck: exit $?"
  grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) " "$OUT/memcheck.log" | head
  if [[ -z "${GPU_CHECK_MEMCHECK_FILTER:-}" ]]; then
    timeout "$(at_most 60)" compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/autotrain_tests" \
      --gtest_filter='CudaKernels.Wgmma*' > "$OUT/memcheck-wgmma.log" 2>&1
    echo "memcheck, wgmma: exit $?"
    grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) " "$OUT/memcheck-wgmma.log" | head
  fi
}

ncu() {
  stage "ncu"
  local pattern="${GPU_CHECK_NCU_KERNEL:-gemv_tensor_core_kernelI13__nv_bfloat16LNS1_6ScalesE2ELi2EE}"
  BENCH_GPU_GEMV_ONLY=gate/up BENCH_GPU_GEMV_ROWS=1 BENCH_GPU_GEMV_SWEEP=0 timeout "$(at_most 120)" \
    "$(type -P ncu || echo /usr/local/cuda/bin/ncu)" --kernel-name-base mangled --kernel-name "regex:$pattern" \
    --launch-skip 20 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    "$BUILD/bench_gpu" gemv > "$OUT/ncu-gemv.txt" 2>&1
  echo "ncu: exit $?"
  grep -E "DRAM Throughput|Memory Throughput|Duration|SM Active Cycles|Elapsed Cycles|Issued Ipc|Eligible Warps|Active Warps Per|No Eligible|Achieved Occupancy|Registers Per|Stall|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Theoretical Occupancy|Block Limit" "$OUT/ncu-gemv.txt" | head -40
}

# The 1B-shaped end to end, within $1 seconds (default: 200, or what is left).
e2e1b() {
  stage "end to end, 1b"
  BENCH_GPU_WORK="$WORK_1B" timeout "${1:-$(at_most 200)}" \
    bash tools/bench_gpu.sh "$BUILD" 1b 10 "${E2E_ARGS[@]}" > "$OUT/e2e-1b.txt" 2>&1
  echo "e2e 1b: exit $?"
  tail -12 "$OUT/e2e-1b.txt"
  for side in ours peer; do
    [[ -f "$WORK_1B/$side-profile.json.summary.txt" ]] || continue
    cp "$WORK_1B/$side-profile.json.summary.txt" "$OUT/1b-$side-profile.txt"
    head -30 "$OUT/1b-$side-profile.txt"
  done
}

e2e() {
  wait_for_8b
  if [[ -f "$WORK_8B/model/config.json" ]] && (($(left) > 150)); then
    stage "end to end, 8b"
    BENCH_GPU_WORK="$WORK_8B" timeout "$(at_most "${GPU_CHECK_E2E_SECONDS:-$(($(left) - 5))}")" \
      bash tools/bench_gpu.sh "$BUILD" 8b 6 "${E2E_ARGS[@]}" > "$OUT/e2e-8b.txt" 2>&1
    echo "e2e 8b: exit $?"
    tail -12 "$OUT/e2e-8b.txt"
    grep -iE "quantiz|loaded|seconds" "$WORK_8B/ours.log" | head -5
    for side in ours peer; do
      [[ -f "$WORK_8B/$side-profile.json.summary.txt" ]] && cp "$WORK_8B/$side-profile.json.summary.txt" "$OUT/8b-$side-profile.txt"
    done
  elif (($(left) > 120)) && ! wanted e2e1b; then
    echo "=== no 8b model or too little time for it"
    e2e1b $(($(left) - 5))
  else
    echo "=== end to end: skipped ($(left) s left)"
  fi
}

generate() {
  local model=""
  if wanted e2e; then
    wait_for_8b
    [[ -f "$WORK_8B/model/config.json" ]] && model="$WORK_8B/model"
  fi
  if [[ -z "$model" ]]; then
    if [[ -n "$MAKE_1B" ]]; then
      stage "make-model 1b (started with the build): waiting at most $(at_most 150) s"
      wait_at_most "$MAKE_1B" "$(at_most 150)"
      tail -2 "$OUT/make-1b.log"
    fi
    if [[ ! -f "$WORK_1B/model/config.json" ]]; then
      stage "make-model 1b"
      timeout "$(at_most 150)" python3 tools/bench_gpu_peer.py make-model --shape 1b --out "$WORK_1B" \
        > "$OUT/make-1b.log" 2>&1 || { echo "make-model 1b failed"; tail -3 "$OUT/make-1b.log"; return; }
    fi
    model="$WORK_1B/model"
  fi
  local tokens="${GPU_CHECK_GENERATE_TOKENS:-128}"
  stage "generate ($model, $tokens new tokens)"
  timeout "$(at_most 150)" bash tools/bench_generate.sh "$BUILD" "$model" "$tokens" int4 > "$OUT/generate.txt" 2>&1
  echo "generate: exit $?"
  tail -7 "$OUT/generate.txt"
  local variant settings
  # The GEMV's defaults (grouped, tiled weights) turned off, alone and together, each against the line above.
  for variant in "AUTOTRAIN_GEMV_GROUP=0" "AUTOTRAIN_GEMV_TILES=0" "AUTOTRAIN_GEMV_GROUP=0 AUTOTRAIN_GEMV_TILES=0"; do
    read -r -a settings <<< "$variant"
    env "${settings[@]}" timeout "$(at_most 60)" "$BUILD/autotrain" generate --model "$model" --max-new-tokens "$tokens" \
      --prompt "${BENCH_GENERATE_PROMPT:-The quick brown fox jumps over the lazy dog, and then the fox}" --ignore-eos \
      --dtype bf16 --quantization int4 --device cuda 2>&1 >/dev/null | grep -E "generate: |gemv_tiles" | sed "s/^/$variant: /"
  done
  # Where a token's time goes: the kernels' time per token beside the wall time, and the CPU operators.
  AUTOTRAIN_PROFILE=/tmp/generate-profile.json AUTOTRAIN_PROFILE_STEPS=20-59 timeout "$(at_most 60)" \
    "$BUILD/autotrain" generate --model "$model" --max-new-tokens 64 --prompt "The quick brown fox" --ignore-eos \
    --dtype bf16 --quantization int4 --device cuda > /dev/null 2>&1
  echo "generate, profiled: exit $?"
  if [[ -f /tmp/generate-profile.json.summary.txt ]]; then
    cp /tmp/generate-profile.json.summary.txt "$OUT/generate-profile.txt"
    grep -E "over 40 step" "$OUT/generate-profile.txt"
    head -12 "$OUT/generate-profile.txt"
  fi
}

# The stages in the order GPU_CHECK_STAGES names them.
for name in $STAGES; do
  if (($(left) > 10)); then "$name"; else echo "=== $name: skipped ($(left) s left)"; fi
done
[[ -n "$MAKE_8B" ]] && kill "$MAKE_8B" 2>/dev/null
[[ -n "$MAKE_1B" ]] && kill "$MAKE_1B" 2>/dev/null
stage "done"
