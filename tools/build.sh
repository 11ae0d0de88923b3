#!/usr/bin/env bash
# Configures and builds autotrain into build/ (Release, two jobs). Extra arguments go to CMake's
# configure step, e.g. tools/build.sh -DAUTOTRAIN_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && [[ ! -f build/CMakeCache.txt ]] && generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j2
