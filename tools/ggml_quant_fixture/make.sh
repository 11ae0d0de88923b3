#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The autotrain authors
#
# Regenerates the ggml quantizer fixture (tests/data/ggml_quants/):
#
#   tools/ggml_quant_fixture/make.sh GGML_SRC_DIR OUT_DIR
#
# GGML_SRC_DIR: a ggml source tree (github.com/ggml-org/ggml, or llama.cpp's ggml/ folder) holding
#   src/ggml-quants.c and include/ggml.h. Its commit goes into meta.json: set GGML_COMMIT, or it is read
#   with git when GGML_SRC_DIR is a git checkout.
# OUT_DIR: gets input.f32, importance.f32, q4_0.bin ... q6_K.bin, q4_0.imatrix.bin ... q6_K.imatrix.bin and
#   meta.json.
#
# The oracle is built with gcc into a temporary folder under /tmp, from our oracle.c + ggml_stubs.c and
# ggml's own src/ggml-quants.c, with -O2 -ffp-contract=off and no -march (so no FMA contraction and no
# target-specific code; the *_ref functions are plain scalar C anyway). Env: CC (default gcc), PYTHON
# (default .venv/bin/python3 of this repository, else python3; needs numpy).
set -euo pipefail

if [ $# -ne 2 ]; then
    sed -n '5,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
GGML="$(cd "$1" && pwd)"
OUT="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CC="${CC:-gcc}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python3" ]; then PYTHON="$ROOT/.venv/bin/python3"; else PYTHON=python3; fi
fi
CFLAGS="-std=gnu11 -O2 -ffp-contract=off"

for f in src/ggml-quants.c src/ggml-quants.h src/ggml-common.h src/ggml-impl.h include/ggml.h; do
    [ -f "$GGML/$f" ] || { echo "make.sh: $GGML/$f not found (GGML_SRC_DIR must be a ggml source tree)" >&2; exit 1; }
done
if [ -z "${GGML_COMMIT:-}" ]; then
    GGML_COMMIT="$(git -C "$GGML" rev-parse HEAD 2>/dev/null || echo unknown)"
fi

BUILD="$(mktemp -d /tmp/ggml_quant_fixture.XXXXXX)"
trap 'rm -rf "$BUILD"' EXIT

INC=(-I"$GGML/include" -I"$GGML/src")
# ggml's file: its own warnings are not ours to fix (-w changes no code generation).
"$CC" $CFLAGS -w "${INC[@]}" -c "$GGML/src/ggml-quants.c" -o "$BUILD/ggml-quants.o"
"$CC" $CFLAGS -Wall -Wextra -Werror "${INC[@]}" -c "$HERE/oracle.c" -o "$BUILD/oracle.o"
"$CC" $CFLAGS -Wall -Wextra -Werror "${INC[@]}" -c "$HERE/ggml_stubs.c" -o "$BUILD/ggml_stubs.o"
"$CC" "$BUILD/oracle.o" "$BUILD/ggml_stubs.o" "$BUILD/ggml-quants.o" -lm -o "$BUILD/oracle"

mkdir -p "$OUT"
rm -f "$OUT"/input.f32 "$OUT"/importance.f32 "$OUT"/*.bin "$OUT"/meta.json
"$PYTHON" "$HERE/gen.py" input "$OUT"
"$PYTHON" "$HERE/gen.py" importance "$OUT"
read -r ROWS COLS < <("$PYTHON" -c "import sys; sys.path.insert(0, '$HERE'); import gen; print(gen.ROWS, gen.COLS)")
"$BUILD/oracle" "$OUT/input.f32" "$ROWS" "$COLS" "$OUT" --imatrix "$OUT/importance.f32"

sha() { sha256sum "$1" | cut -d' ' -f1; }
"$PYTHON" "$HERE/gen.py" meta "$OUT" \
    "ggml_repository=https://github.com/ggml-org/ggml" \
    "ggml_commit=$GGML_COMMIT" \
    "ggml_source=src/ggml-quants.c (quantize_row_<type>_ref; quantize_<type> with importance weights), fp16 via ggml_compute_fp32_to_fp16 in src/ggml-impl.h" \
    "ggml_quants_c_sha256=$(sha "$GGML/src/ggml-quants.c")" \
    "ggml_impl_h_sha256=$(sha "$GGML/src/ggml-impl.h")" \
    "ggml_common_h_sha256=$(sha "$GGML/src/ggml-common.h")" \
    "compiler=$("$CC" --version | head -n1)" \
    "cflags=$CFLAGS (NDEBUG not defined: ggml's asserts are on)" \
    "host=$(uname -m) $(uname -s)" \
    "generator=tools/ggml_quant_fixture/make.sh (oracle.c, ggml_stubs.c, gen.py)"
echo "make.sh: wrote $OUT (ggml $GGML_COMMIT)"
