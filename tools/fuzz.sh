#!/usr/bin/env bash
# Fuzzes the loaders of user files with libFuzzer (clang, from Debian), under AddressSanitizer and
# UndefinedBehaviorSanitizer:
#
#   tools/fuzz.sh SECONDS [TARGET ...]     (default targets: safetensors_header training_params
#                                           tokenizer_json dataset chat_template dataset_card imatrix;
#                                           SECONDS per target)
#
# Builds build-fuzz/ with clang++, runs each target for SECONDS on a working corpus seeded from
# tests/fuzz/corpus/<target>/ (kept in build-fuzz/corpus between runs), and prints executions and
# coverage per target. A crash, leak, sanitizer report, timeout (> 10 s per input) or out-of-memory
# (> 2 GB) stops that target; its input is copied into tests/fuzz/regressions/<target>/ so that the
# FuzzRegression test replays it from then on, and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:?usage: tools/fuzz.sh SECONDS [TARGET ...]}"
shift
targets=("$@")
((${#targets[@]})) || targets=(safetensors_header training_params tokenizer_json dataset chat_template dataset_card imatrix)

tools/setup.sh
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)"; exit 2; }
generator=()
command -v ninja >/dev/null && [[ ! -f build-fuzz/CMakeCache.txt ]] && generator=(-G Ninja)
CXX=clang++ CC=clang cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAUTOTRAIN_FUZZ=ON -DAUTOTRAIN_BUILD_TESTS=OFF -DAUTOTRAIN_CUDA=OFF >/dev/null
cmake --build build-fuzz -j2 --target "${targets[@]/#/fuzz_}"

# libtorch's own allocations are not instrumented; its one-time globals are not leaks we can fix.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
status=0
for target in "${targets[@]}"; do
  corpus="build-fuzz/corpus/$target" artifacts="build-fuzz/crashes/$target/"
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log="build-fuzz/$target.log"
  echo "fuzz: $target for ${seconds}s"
  if build-fuzz/fuzz_"$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1; then
    echo "fuzz: $target: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') inputs," \
         "$(grep -o 'cov: [0-9]*' "$log" | tail -1), 0 crashes"
  else
    status=1
    mkdir -p tests/fuzz/regressions/"$target"
    cp "$artifacts"* tests/fuzz/regressions/"$target"/ 2>/dev/null || true
    echo "fuzz: $target FAILED; see $log; the input is in tests/fuzz/regressions/$target/"
    grep -m3 -E 'ERROR|runtime error|terminate|deadly signal' "$log" || true
  fi
done
exit $status
