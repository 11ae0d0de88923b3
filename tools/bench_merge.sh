#!/usr/bin/env bash
# Benchmark: merge-adapter (src/merge.cpp) on a > 1 GB model: peak RSS against the largest shard, wall time.
#
#   tools/bench_merge.sh [BUILD_DIR]      (default: build)
#
# 1. writes a random-weight LlamaForCausalLM with transformers (hidden 2048, intermediate 5632, 10 layers,
#    vocab 32000, bf16, ~1.15 GB in 300 MB shards) and a random r 16 adapter on all 7 projections into
#    $BENCH_DIR (default /tmp/autotrain_bench_merge; kept for later runs, delete it yourself);
# 2. runs autotrain merge-adapter under /usr/bin/time -v (output in bf16, 300 MB shards);
# 3. prints peak RSS, the largest input / output shard, their ratio (goal < 2) and the wall time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_merge}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"

if [ ! -f "$DIR/base/config.json" ] || [ ! -f "$DIR/adapter/adapter_config.json" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PYTHON" - "$DIR" <<'PY'
import json, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM
out = Path(sys.argv[1])
config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=10, num_attention_heads=16,
                     num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False)
torch.manual_seed(0)
with torch.device("meta"):
    model = LlamaForCausalLM(config)
model = model.to_empty(device="cpu").to(torch.bfloat16)
with torch.no_grad():
    for parameter in model.parameters():
        parameter.normal_(0.0, 0.02)
model.config.dtype = torch.bfloat16
model.save_pretrained(str(out / "base"), max_shard_size="300MB")
r, shapes = 16, {}
for name, module in model.named_modules():
    if name.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        shapes[name] = (module.out_features, module.in_features)
tensors = {}
for name, (o, i) in shapes.items():
    tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(r, i) * 0.01
    tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(o, r) * 0.01
(out / "adapter").mkdir()
save_file(tensors, str(out / "adapter" / "adapter_model.safetensors"), metadata={"format": "pt"})
(out / "adapter" / "adapter_config.json").write_text(json.dumps({
    "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 32, "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bias": "none", "use_rslora": False, "base_model_name_or_path": str(out / "base")}))
PY
fi

rm -rf "$DIR/merged"
/usr/bin/time -v "$BUILD/autotrain" merge-adapter --base "$DIR/base" --adapter "$DIR/adapter" --out "$DIR/merged" \
  --max-shard-size 300MB 2> "$DIR/time.txt" || { cat "$DIR/time.txt"; exit 1; }
peak_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$DIR/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$DIR/time.txt")
largest_in=$(stat -c %s "$DIR"/base/*.safetensors | sort -n | tail -1)
largest_out=$(stat -c %s "$DIR"/merged/*.safetensors | sort -n | tail -1)
total=$(cat "$DIR"/base/*.safetensors | wc -c)
"$PYTHON" - "$peak_kb" "$largest_in" "$largest_out" "$total" "$wall" <<'PY'
import sys
peak, largest_in, largest_out, total = (int(x) for x in sys.argv[1:5])
peak *= 1024
print(f"model {total / 1e9:.2f} GB; largest shard in {largest_in / 1e6:.0f} MB, out {largest_out / 1e6:.0f} MB")
print(f"peak RSS {peak / 1e6:.0f} MB = {peak / max(largest_in, largest_out):.2f} x largest shard (goal < 2)")
print(f"wall time {sys.argv[5]}")
PY
