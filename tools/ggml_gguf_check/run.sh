#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The autotrain authors
#
# Reads GGUF files with ggml's own reader, the one llama.cpp loads models and LoRA adapters with, and compares
# what it sees with the `gguf` package (gguf-py) that the tests use:
#
#   tools/ggml_gguf_check/run.sh GGML_SRC_DIR FILE.gguf [FILE.gguf ...]
#
# GGML_SRC_DIR: a ggml source tree (github.com/ggml-org/ggml, or llama.cpp's ggml/ folder) with CMakeLists.txt,
# src/ and include/. ggml-base is built from it with cmake in a temporary folder under /tmp (about 10 s on 2 cores),
# read.c against it; then for each file read.c writes ggml's view (keys, tensors, values through the type's
# to_float) and compare.py checks it against gguf-py's: same keys and types, same tensors, offsets and sizes, values
# bit for bit. Exits 1 when ggml refuses a file or anything differs. Env: PYTHON (default .venv/bin/python3).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
GGML="$(cd "$1" && pwd)"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python3}"
WORK="$(mktemp -d /tmp/ggml_gguf_check.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

cmake -S "$GGML" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF >"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log"; exit 1; }
cmake --build "$WORK/build" --target ggml-base -j"$(nproc)" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I"$GGML/include" "$HERE/read.c" "$WORK/build/src/libggml-base.a" \
    -lstdc++ -lm -lpthread -fopenmp -o "$WORK/read"

status=0
for file in "$@"; do
    out="$WORK/out"
    rm -rf "$out" && mkdir -p "$out"
    if ! "$WORK/read" "$file" "$out"; then
        status=1
        continue
    fi
    "$PYTHON" "$HERE/compare.py" "$file" "$out" || status=1
done
exit $status
