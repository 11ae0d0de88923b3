#!/usr/bin/env bash
# Benchmark: what an importance matrix buys a GGUF export, and what `autotrain imatrix` costs against a Python peer.
#
#   tools/bench_imatrix.sh [BUILD_DIR]      (default: build)
#
# 1. trains a small Llama (4 layers, hidden 256, intermediate 768: rows of whole K-quant blocks; the fixture's
#    1000-token sentencepiece vocabulary) for BENCH_TRAIN_STEPS (400) steps on Debian's license texts and the
#    multilingual corpus, in Python, into $BENCH_DIR (default /tmp/autotrain_bench_imatrix; kept for later runs,
#    delete it yourself), with a 90 / 10 split of the paragraphs (tools/bench_imatrix_peer.py model). Random
#    weights would not do: their activations have none of the structure an importance matrix captures.
# 2. `autotrain imatrix` over the train split (blocks of 128) against the Python peer (transformers with forward
#    pre-hooks summing x^2 on every projection and the LM head), each under /usr/bin/time -v: wall time, peak RSS,
#    and the largest difference between the two matrices;
# 3. `autotrain eval --gguf-type T` on the valid split for f16 and, without and with the matrix, q4_0, q3_K_S, q3_K_M,
#    q2_K (and q2_K_S, which needs it): the perplexity llama.cpp's weights of each GGUF give.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_imatrix}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
TOKENIZER="$BUILD/fixtures/tokenizers/sentencepiece"
[ -f "$TOKENIZER/tokenizer.model" ] || { echo "bench_imatrix: $TOKENIZER missing: build the tests first" >&2; exit 1; }
PEER="$ROOT/tools/bench_imatrix_peer.py"
if [ ! -f "$DIR/model/config.json" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  echo "== training the bench model (BENCH_TRAIN_STEPS=${BENCH_TRAIN_STEPS:-400})"
  "$PYTHON" "$PEER" model "$DIR" "$TOKENIZER"
fi
export OMP_WAIT_POLICY=PASSIVE
measure() {  # LABEL COMMAND...: runs it under /usr/bin/time -v, prints wall time and peak RSS
  local label="$1" log="$DIR/time.log"
  shift
  /usr/bin/time -v "$@" >"$DIR/out.log" 2>"$log" || { cat "$DIR/out.log" "$log"; exit 1; }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log" | awk -F: '{print ($1 * 60) + $2}')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  printf '%-28s %7.2f s  %6d MB\n' "$label" "$wall" "$((rss / 1024))"
}
cd "$DIR"
echo "== the importance matrix of the train split (blocks of 128 tokens, CPU)"
measure "autotrain imatrix" "$BUILD/autotrain" imatrix --model model --data data --split train --block-size 128 \
  --batch-size 8 --device cpu --cache-dir cache --out model.imatrix.gguf
measure "python peer (transformers)" "$PYTHON" "$PEER" peer model data/train.jsonl 128 peer.json
"$PYTHON" "$PEER" compare model.imatrix.gguf peer.json
echo "== perplexity on the valid split of the model's weights as each GGUF stores them (llama.cpp's values)"
eval_ppl() {
  "$BUILD/autotrain" eval --model model --data data --split valid --block-size 128 --quantization none --device cpu \
    --cache-dir cache --json "$@" 2>/dev/null | tail -1 | "$PYTHON" -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'
}
printf '%-8s %12s %14s\n' type "no imatrix" "with imatrix"
printf '%-8s %12s %14s\n' "(fp32)" "$(eval_ppl)" "-"
printf '%-8s %12s %14s\n' f16 "$(eval_ppl --gguf-type f16)" "-"
for type in q4_0 q3_K_S q3_K_M q2_K; do
  printf '%-8s %12s %14s\n' "$type" "$(eval_ppl --gguf-type "$type")" \
    "$(eval_ppl --gguf-type "$type" --imatrix model.imatrix.gguf)"
done
printf '%-8s %12s %14s\n' q2_K_S "-" "$(eval_ppl --gguf-type q2_K_S --imatrix model.imatrix.gguf)"
