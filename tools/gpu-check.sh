#!/usr/bin/env bash
# Every GPU check of this project in one run, most important first, for a machine lent for minutes (the
# GPU image of tools/device-build.sh: .debs/ and .whl/ from tools/device-kit.sh travel with the tree):
#   1. build (build-device/, sm_90) 2. the kernel tests against the CPU reference 3. end-to-end QLoRA of a
#   1B-shaped Llama against PEFT + bitsandbytes 4. the GPU training tests (CPU vs CUDA) 5. tools/bench_gpu
#   6. compute-sanitizer memcheck of the kernel tests 7. the 8B-shaped end-to-end, if time is left.
# Logs and results go to $OUT (default /tmp/gpu-check). GPU_CHECK_SECONDS (default 540) bounds the whole.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check}"
BUILD=build-device
BUDGET="${GPU_CHECK_SECONDS:-540}"
START=$SECONDS
mkdir -p "$OUT"
left() { echo $((BUDGET - (SECONDS - START))); }
stage() { echo "=== $1 (t=$((SECONDS - START)) s)"; }

nvidia-smi -L
stage build
if ! bash tools/device-build.sh "$BUILD" > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -30
  tail -30 "$OUT/build.log"
  exit 1
fi
# shellcheck disable=SC1091
source "$BUILD/env.sh"

stage "kernel tests"
timeout 120 "$BUILD/tests/autotrain_tests" --gtest_filter='CudaBackend.*:CudaKernels.*:CudaFusedLora.*' > "$OUT/kernel-tests.log" 2>&1
echo "kernel tests: exit $?"
grep -E "^\[  (PASSED|FAILED|  OK|SKIPPED) |Failure|error|Expected|Which is|worst|trace" "$OUT/kernel-tests.log" | head -60
timeout 60 "$BUILD/tests/autotrain_tests" --gtest_filter='FusedLora.*' 2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure" | head

stage "end to end, 1b"
BENCH_GPU_WORK=/tmp/bench-1b timeout $(( $(left) < 240 ? $(left) : 240 )) \
  bash tools/bench_gpu.sh "$BUILD" 1b 10 --lora-dropout 0 > "$OUT/e2e-1b.txt" 2>&1
echo "e2e 1b: exit $?"
tail -12 "$OUT/e2e-1b.txt"

stage "GPU training tests"
(cd "$BUILD" && timeout $(( $(left) < 200 ? $(left) : 200 )) ctest -R 'Cuda|GpuTraining|Device' --output-on-failure) \
  > "$OUT/training-tests.log" 2>&1
echo "GPU training tests: exit $?"
grep -E "Passed|Failed|Skipped|Not Run|tests passed|Failure|Expected|Which is" "$OUT/training-tests.log" | head -40

stage "bench_gpu"
timeout $(( $(left) < 150 ? $(left) : 150 )) "$BUILD/bench_gpu" > "$OUT/bench_gpu.txt" 2>&1
echo "bench_gpu: exit $?"
grep -v '^JSON' "$OUT/bench_gpu.txt" | head -80

stage "memcheck"
timeout $(( $(left) < 150 ? $(left) : 150 )) compute-sanitizer --tool memcheck --error-exitcode 9 \
  "$BUILD/tests/autotrain_tests" --gtest_filter='CudaKernels.*' > "$OUT/memcheck.log" 2>&1
echo "memcheck: exit $?"
grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) " "$OUT/memcheck.log" | head

if (( $(left) > 200 )); then
  stage "end to end, 8b"
  BENCH_GPU_WORK=/tmp/bench-8b timeout $(( $(left) - 10 )) \
    bash tools/bench_gpu.sh "$BUILD" 8b 6 --lora-dropout 0 > "$OUT/e2e-8b.txt" 2>&1
  echo "e2e 8b: exit $?"
  tail -12 "$OUT/e2e-8b.txt"
else
  echo "=== end to end, 8b: skipped ($(left) s left)"
fi
stage done
