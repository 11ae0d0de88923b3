#!/usr/bin/env bash
# Benchmark: our GGUF block quantizers (src/ggml_quants.cpp) against ggml's own reference quantizers, the ones
# llama-quantize runs without an importance matrix, and its importance-weighted ones (quantize_<type> with an
# entry of lognormal(0, 1.5) values, "+imatrix"), on the same float32 matrix (a Llama-3-8B MLP weight's shape,
# 14336 x 4096, N(0, 0.02)), one thread each, best of 3:
#
#   tools/bench_ggml_quants.sh GGML_SRC_DIR [BUILD_DIR]     (a ggml source tree, as for ggml_quant_fixture/make.sh)
#
# ggml's side is tools/ggml_quant_fixture/time.c compiled with ggml's src/ggml-quants.c, gcc -O3 -DNDEBUG
# -ffp-contract=off (release optimisation; no -march, like our build); ours is `bench_quantize --ggml`.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
GGML="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${2:-$ROOT/build}" && pwd)"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
WORK="$(mktemp -d /tmp/bench_ggml_quants.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROWS=14336 COLS=4096

"$PYTHON" -c "import numpy as np; np.random.default_rng(0).normal(0, 0.02, ($ROWS, $COLS)).astype('<f4').tofile('$WORK/x.f32')"
"$PYTHON" -c "import numpy as np; np.random.default_rng(1).lognormal(0, 1.5, $COLS).astype('<f4').tofile('$WORK/qw.f32')"
FLAGS=(-std=gnu11 -O3 -DNDEBUG -ffp-contract=off -I"$GGML/include" -I"$GGML/src")
gcc "${FLAGS[@]}" -w -c "$GGML/src/ggml-quants.c" -o "$WORK/ggml-quants.o"
gcc "${FLAGS[@]}" -c "$ROOT/tools/ggml_quant_fixture/time.c" -o "$WORK/time.o"
gcc "${FLAGS[@]}" -c "$ROOT/tools/ggml_quant_fixture/ggml_stubs.c" -o "$WORK/stubs.o"
gcc "$WORK/time.o" "$WORK/stubs.o" "$WORK/ggml-quants.o" -lm -o "$WORK/time"

"$WORK/time" "$WORK/x.f32" $ROWS $COLS "$WORK/qw.f32" | tee "$WORK/ggml.txt"
OMP_WAIT_POLICY=PASSIVE "$BUILD/bench_quantize" --ggml "$WORK/x.f32" $ROWS $COLS "$WORK/qw.f32" 1 | tee "$WORK/ours.txt"
"$PYTHON" - "$WORK/ggml.txt" "$WORK/ours.txt" <<'PY'
import sys
def seconds(path):
    return {line.split()[1]: float(line.split()[4]) for line in open(path) if " threads 1: " in line}
ggml, ours = seconds(sys.argv[1]), seconds(sys.argv[2])
for name in ggml:
    print(f"{name}: ggml {ggml[name]:.3f} s, ours {ours[name]:.3f} s -> ggml / ours = {ggml[name] / ours[name]:.2f}x")
PY
