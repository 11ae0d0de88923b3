#!/usr/bin/env bash
# estimate-cost against measured runs: for several configurations of a generated Llama (hidden 512, 4 layers,
# vocab 32000; big enough for its memory to show in the resident set), runs `estimate-cost --calibrate`
# (1 warm-up + 3 real optimizer steps with train's code on this CPU) and prints predicted vs measured peak
# memory (RSS over the pre-load baseline) and step time. The time column "calibrated" applies the first
# configuration's time factor to the others: it tests whether the FLOP model scales right between runs.
# Goal: memory within 10%, calibrated time within 15%. glibc keeps freed heap blocks (under its dynamic mmap
# threshold, up to 32 MiB) resident; the CPU estimate counts them as 25% of the per-step memory
# (kCpuHeapRetention). MALLOC_MMAP_THRESHOLD_=262144 in the environment returns them at once.
#
# AUTOTRAIN_BENCH_ARCH=qwen3 generates a Qwen3 instead (the same sizes, but 8 heads of 128: q and the attention
# twice as wide as hidden, and the q/k head norms).
#
# usage: tools/bench_estimate.sh [BUILD_DIR] [PYTHON]   (defaults: build, .venv/bin/python3 or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PYTHON=${2:-$( [ -x .venv/bin/python3 ] && echo .venv/bin/python3 || echo python3 )}
ARCH=${AUTOTRAIN_BENCH_ARCH:-llama}
[[ $ARCH == llama || $ARCH == qwen3 ]] || { echo "AUTOTRAIN_BENCH_ARCH must be llama or qwen3" >&2; exit 2; }
WORK=${AUTOTRAIN_BENCH_DIR:-/tmp/autotrain-bench-estimate$( [ "$ARCH" = llama ] || echo "-$ARCH" )}
FIXTURE_TOKENIZER=${AUTOTRAIN_FIXTURES_DIR:-$BUILD/fixtures}/models/llama
mkdir -p "$WORK/data"

if [ ! -f "$WORK/model/model.safetensors" ]; then
  # Weights stored in bf16 and trained in fp32: every tensor is converted at load, so no page of the
  # checkpoint's mapping stays resident and the RSS shows the model as the estimate counts it.
  "$PYTHON" - "$WORK/model" "$FIXTURE_TOKENIZER" "$ARCH" <<'EOF'
import shutil, sys, torch, transformers
out, tokenizer, arch = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
sizes = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
if arch == "qwen3":
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=128, **sizes))
else:
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes))
model = model.to(torch.bfloat16)
model.save_pretrained(out)
for name in ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"]:
    shutil.copy(f"{tokenizer}/{name}", out)
EOF
fi
if [ ! -f "$WORK/data/train.jsonl" ]; then
  "$PYTHON" - "$WORK/data/train.jsonl" <<'EOF'
import json, random, sys
random.seed(0)
words = "the a model learns to predict next token from text data with small steps and many blocks".split()
with open(sys.argv[1], "w") as f:
    for _ in range(1500):
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(60))}) + "\n")
EOF
fi

# name | quantization | block | batch | target_modules | checkpointing off
CONFIGS=(
  "int4-b2-t256-qv-ckpt|int4|256|2|q_proj,v_proj|false"
  "int4-b2-t256-qv|int4|256|2|q_proj,v_proj|true"
  "none-b2-t512-all|none|512|2|all-linear|true"
  "none-b4-t128-qkv-ckpt|none|128|4|q_proj,k_proj,v_proj|false"
  "int4-b1-t512-all|int4|512|1|all-linear|true"
  "int8-b2-t256-qv|int8|256|2|q_proj,v_proj|true"
)

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
for entry in "${CONFIGS[@]}"; do
  IFS='|' read -r name quant block batch targets nockpt <<<"$entry"
  cat > "$WORK/$name.json" <<EOF
{"model": "$WORK/model", "project_name": "bench-estimate", "data_path": "$WORK/data", "block_size": $block,
 "batch_size": $batch, "gradient_accumulation": 1, "epochs": 1, "lr": 0.0001, "mixed_precision": "none",
 "quantization": "$quant", "target_modules": "$targets", "peft": true, "lora_r": 16, "lora_alpha": 32,
 "lora_dropout": 0.05, "disable_gradient_checkpointing": $nockpt}
EOF
  "$BUILD/autotrain" --log-level warn estimate-cost --config "$WORK/$name.json" --calibrate --json --gpu L4 \
      --cache-dir "$WORK/cache" 2>/dev/null |
    "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"name": sys.argv[1], **d["calibration"]}))' \
      "$name" >> "$RESULTS"
done

"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
factor = rows[0]["time_factor"]
mib = 2 ** 20
print(f"time factor of the reference run ({rows[0]['name']}): {factor:.2f}\n")
print(f"| config | predicted peak | measured peak | error | predicted step (calibrated) | measured step | error | uncalibrated |")
print(f"|---|---|---|---|---|---|---|---|")
for r in rows:
    memory_error = 100 * (r["predicted_peak_bytes"] - r["measured_peak_bytes"]) / r["measured_peak_bytes"]
    calibrated = r["predicted_seconds_per_step"] * factor
    measured = r["measured_seconds_per_step"]
    time_error = 100 * (calibrated - measured) / measured
    raw_error = 100 * (r["predicted_seconds_per_step"] - measured) / measured
    print(f"| {r['name']} | {r['predicted_peak_bytes'] / mib:.1f} MiB | {r['measured_peak_bytes'] / mib:.1f} MiB | "
          f"{memory_error:+.1f}% | {calibrated:.3f} s | {measured:.3f} s | {time_error:+.1f}% | {raw_error:+.1f}% |")
EOF
