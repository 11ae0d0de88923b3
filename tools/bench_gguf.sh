#!/usr/bin/env bash
# Benchmark: export-gguf (src/gguf.cpp, src/ggml_quants.cpp) against its Python peer, gguf-py as llama.cpp's
# convert_hf_to_gguf.py uses it (tools/bench_gguf_peer.py), on a > 1 GB model: wall time and peak RSS.
#
#   tools/bench_gguf.sh [BUILD_DIR]      (default: build)
#
# 1. writes a random-weight LlamaForCausalLM (hidden 2048, intermediate 5632, 10 layers, vocab 32000, bf16,
#    ~1.15 GB, weights N(0, 0.02); the sentencepiece fixture tokenizer) into $BENCH_DIR (default
#    /tmp/autotrain_bench_gguf; kept for later runs, delete it yourself);
# 2. for f16, q8_0 and q4_0: ours, then the peer, each under /usr/bin/time -v; then ours alone for q3_K_M, q4_K_M and q6_K
#    (gguf-py has no K-quant quantizer; llama.cpp's is llama-quantize, C);
# 3. prints each run's wall time and peak RSS, and the peer's time and memory as multiples of ours.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_gguf}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
TOKENIZER="$BUILD/fixtures/tokenizers/sentencepiece"
[ -f "$TOKENIZER/tokenizer.model" ] || { echo "bench_gguf: $TOKENIZER missing: build the tests first" >&2; exit 1; }

if [ ! -f "$DIR/model/config.json" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PYTHON" - "$DIR/model" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=10, num_attention_heads=16,
                     num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
torch.manual_seed(0)
with torch.device("meta"):
    model = LlamaForCausalLM(config)
model = model.to_empty(device="cpu").to(torch.bfloat16)
with torch.no_grad():
    for parameter in model.parameters():
        parameter.normal_(0.0, 0.02) if parameter.dim() >= 2 else parameter.fill_(1.0)
model.config.dtype = torch.bfloat16
model.save_pretrained(sys.argv[1], max_shard_size="300MB")
PY
  cp "$TOKENIZER"/* "$DIR/model/"
fi

measure() {  # label, command...: runs it under time -v, prints "label wall_s peak_MB"
  local label="$1"; shift
  /usr/bin/time -v "$@" > "$DIR/$label.log" 2> "$DIR/$label.time" || { cat "$DIR/$label.log" "$DIR/$label.time"; exit 1; }
  local wall peak
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$DIR/$label.time" |
         awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  peak=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$DIR/$label.time")
  echo "$label $wall $((peak / 1024))" >> "$DIR/results.txt"
  rm -f "$DIR/out.gguf"
}

rm -f "$DIR/results.txt"
for type in f16 q8_0 q4_0; do
  measure "ours_$type" "$BUILD/autotrain" export-gguf --model "$DIR/model" --out "$DIR/out.gguf" --type "$type"
  measure "peer_$type" "$PYTHON" "$ROOT/tools/bench_gguf_peer.py" "$DIR/model" "$DIR/out.gguf" "$type"
done
for type in q3_K_M q4_K_M q6_K; do
  measure "ours_$type" "$BUILD/autotrain" export-gguf --model "$DIR/model" --out "$DIR/out.gguf" --type "$type"
done
"$PYTHON" - "$DIR/results.txt" "$(nproc)" <<'PY'
import sys
rows = {label: (float(wall), int(peak)) for label, wall, peak in (line.split() for line in open(sys.argv[1]))}
print(f"export-gguf of a 1.15 GB bf16 Llama (10 layers, hidden 2048), {sys.argv[2]} cores")
for label, (wall, peak) in rows.items():
    line = f"  {label:12s} {wall:7.2f} s  {peak:6d} MB"
    ours = rows.get("ours_" + label[5:]) if label.startswith("peer_") else None
    if ours:
        line += f"   peer / ours: {wall / ours[0]:.2f}x time, {peak / ours[1]:.2f}x memory"
    print(line)
PY
