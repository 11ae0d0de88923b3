#!/usr/bin/env bash
# Benchmark: loading a sharded safetensors checkpoint (src/safetensors.cpp) against `cat shards > /dev/null`.
#
#   tools/bench_load.sh [BUILD_DIR] [SIZE_GB]      (defaults: build, 1.2)
#
# 1. writes a SIZE_GB checkpoint of random bf16 tensors in 3 shards with the Python safetensors library
#    (in $BENCH_DIR, default /tmp/autotrain_bench_ckpt; kept for later runs, delete it yourself);
# 2. times `cat` of the shards twice and keeps the second (warm page cache) figure;
# 3. runs bench_load (BUILD_DIR/bench_load when CMake builds it, else compiled here from tools/bench_load.cpp
#    with the library's own compile and link lines) under /usr/bin/time: two passes, warm figures from the second;
# 4. prints load/cat wall-time ratios and peak RSS / weights size.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
SIZE_GB="${2:-1.2}"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_ckpt}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"

# ---- 1. the checkpoint -------------------------------------------------------------------------------
if [ ! -f "$DIR/model.safetensors.index.json" ] || [ "$(cat "$DIR/.size_gb" 2>/dev/null)" != "v2 $SIZE_GB" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PYTHON" - "$DIR" "$SIZE_GB" <<'EOF'
import json, os, sys, torch
from safetensors.torch import save_file
folder, size_gb = sys.argv[1], float(sys.argv[2])
hidden, intermediate, shards = 2048, 5632, 3
# TinyLlama-like layers: 4 square attention matrices + 3 MLP matrices per layer, bf16 (~100 MB a layer).
layer = {f"self_attn.{p}_proj.weight": (hidden, hidden) for p in "qkvo"}
layer.update({f"mlp.{p}_proj.weight": (intermediate, hidden) if p != "down" else (hidden, intermediate) for p in ("gate", "up", "down")})
layer_bytes = sum(2 * a * b for a, b in layer.values())
layers = max(shards, round(size_gb * 1e9 / layer_bytes))
g = torch.Generator().manual_seed(0)
weight_map, total = {}, 0
per_shard = -(-layers // shards)
for s in range(shards):
    name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    tensors = {}
    for i in range(s * per_shard, min(layers, (s + 1) * per_shard)):
        for key, shape in layer.items():
            tensors[f"model.layers.{i}.{key}"] = torch.randn(shape, generator=g, dtype=torch.float32).to(torch.bfloat16)
    save_file(tensors, os.path.join(folder, name), metadata={"format": "pt"})
    weight_map.update({k: name for k in tensors})
    total += sum(t.numel() * 2 for t in tensors.values())
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
          open(os.path.join(folder, "model.safetensors.index.json"), "w"), indent=2)
print(f"wrote {layers} layers, {total / 1e9:.2f} GB in {shards} shards to {folder}")
EOF
  echo "v2 $SIZE_GB" > "$DIR/.size_gb"
fi
WEIGHTS_BYTES=$(cat "$DIR"/*.safetensors | wc -c)

# ---- 2. the bench program ----------------------------------------------------------------------------
BENCH="$BUILD/bench_load"
if [ ! -x "$BENCH" ]; then
  # No CMake target yet: reuse the exact compile line of src/safetensors.cpp (same flags and precompiled
  # header) and the link line of the CLI, with our object in place of the CLI's.
  BENCH="$BUILD/bench_load_standalone"
  cmake --build "$BUILD" -j2 --target autotrain >/dev/null
  compile=$(ninja -C "$BUILD" -t commands autotrain_lib | grep -E -- '-c [^ ]*src/safetensors\.cpp$' |
            sed -e 's/ -MD -MT [^ ]* -MF [^ ]*//' -e "s| -o [^ ]* -c [^ ]*| -o bench_load.o -c $ROOT/tools/bench_load.cpp|")
  link=$(ninja -C "$BUILD" -t commands autotrain | tail -1 |
         sed -e 's| CMakeFiles/autotrain.dir/src/cli/[^ ]*\.o||g' -e 's| -o autotrain | bench_load.o -o bench_load_standalone |')
  (cd "$BUILD" && eval "$compile" && eval "$link")
fi

# ---- 3. measure ---------------------------------------------------------------------------------------
echo "checkpoint: $DIR ($WEIGHTS_BYTES bytes in $(ls "$DIR"/*.safetensors | wc -l) shards); $(nproc) cores"
cat_s=""
for pass in 1 2; do
  start=$(date +%s.%N)
  cat "$DIR"/*.safetensors > /dev/null
  cat_s=$(echo "$(date +%s.%N) - $start" | bc -l)
  printf 'cat pass %d: %.3f s (%.2f GB/s)\n' "$pass" "$cat_s" "$(echo "$WEIGHTS_BYTES / $cat_s / 1000000000" | bc -l)"
done

log=$(mktemp)
/usr/bin/time -v "$BENCH" "$DIR" 2 2>"$log.time" | tee "$log"
grep -E 'Elapsed|Maximum resident' "$log.time"
touch_s=$(sed -n 's/^pass 2: .*touch pages \([0-9.]*\) s.*/\1/p' "$log")
read_s=$(sed -n 's/^pass 2: .*read all \([0-9.]*\) s.*/\1/p' "$log")
sum_s=$(sed -n 's/^pass 2: .*at::sum \([0-9.]*\) s.*/\1/p' "$log")
open_s=$(sed -n 's/^pass 2: .*open \([0-9.]*\) s.*/\1/p' "$log")
peak=$(sed -n 's/^peak_rss_bytes //p' "$log")
anon=$(sed -n 's/^rss_anon_bytes //p' "$log")
base=$(sed -n 's/^baseline_rss_bytes //p' "$log")
printf 'ratio (open + touch pages) / cat, warm: %.2f\n' "$(echo "($open_s + $touch_s) / $cat_s" | bc -l)"
printf 'ratio (open + read all) / cat, warm:    %.2f\n' "$(echo "($open_s + $touch_s + $read_s) / $cat_s" | bc -l)"
printf 'ratio (open + at::sum) / cat, warm:     %.2f\n' "$(echo "($open_s + $sum_s) / $cat_s" | bc -l)"
printf 'ratio peak RSS / weights:               %.3f (%.3f above the %.0f MB libtorch baseline; anonymous RSS at the end %.0f MB)\n' \
  "$(echo "$peak / $WEIGHTS_BYTES" | bc -l)" "$(echo "($peak - $base) / $WEIGHTS_BYTES" | bc -l)" \
  "$(echo "$base / 1000000" | bc -l)" "$(echo "$anon / 1000000" | bc -l)"
rm -f "$log" "$log.time"
