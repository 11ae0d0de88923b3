#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) in build-asan/:
#
#   tools/test-sanitizers.sh [CTEST_ARGS ...]     e.g. tools/test-sanitizers.sh -R 'Safetensors|Tokenizer'
#
# Every autotrain code path the tests reach, including the binary the CLI tests run, is instrumented; a
# sanitizer report fails the test that triggered it. libtorch itself is not instrumented. Leak detection is
# off: libtorch and the CUDA libraries keep process-lifetime allocations that LeakSanitizer would report.
#
# Where nvcc is installed, the CUDA kernels then run instrumented too, under the CPU emulator of tests/simt
# (build-asan-kernels/): a kernel that reads or writes outside its inputs and outputs is a report, as
# compute-sanitizer's memcheck gives on a GPU. That build lets UBSan recover (UBSAN_OPTIONS still halts at the
# first report): with -fno-sanitize-recover=undefined, GCC 12 built the emulated 64x128 and 128x256 matmul
# tilings into code that sums wrongly without any report, where Release, RelWithDebInfo, ASan or UBSan alone,
# both with recovery, and valgrind's memcheck (no uninitialised reads) all agree with the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
generator=()
command -v ninja >/dev/null && [[ ! -f build-asan/CMakeCache.txt ]] && generator=(-G Ninja)
flags="-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTOTRAIN_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j2
# allocator_may_return_null: a request larger than ASan can serve fails as it would with the real allocator
# (the out-of-memory tests ask for 4 TiB and expect a failed allocation, not an abort).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
(cd build-asan && ctest --output-on-failure -j2 --timeout 2400 "$@")

if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  generator=()
  command -v ninja >/dev/null && [[ ! -f build-asan-kernels/CMakeCache.txt ]] && generator=(-G Ninja)
  cmake -S . -B build-asan-kernels "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTOTRAIN_CUDA=ON \
    -DCMAKE_CXX_FLAGS="${flags/ -fno-sanitize-recover=undefined/}" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
  cmake --build build-asan-kernels -j2 --target kernels_emulated_tests
  build-asan-kernels/tests/kernels_emulated_tests
fi
