#!/usr/bin/env bash
# Benchmark: `autotrain train` against transformers + PEFT (+ bitsandbytes NF4) on the CPU, same model,
# data and settings, for quantization int4 and none. Not a test: it prints the figures.
#
#   tools/bench_train_cpu.sh [BUILD_DIR]        (default build)
#
# The model is a random-weight ~64M-parameter Llama (hidden 640, 14 layers, GQA 10/5 heads) with the
# fixture sentencepiece tokenizer, written once into $BENCH_DIR (default /tmp/autotrain_bench_train).
# AUTOTRAIN_BENCH_ARCH=qwen3 makes it a Qwen3 of the same sizes (heads of 64, plus the q/k head norms), in
# $BENCH_DIR-qwen3.
# Data: configs/example/data (block 256, batch 4, accumulation 1, one epoch, LoRA r 16 on q/k/v/o,
# gradient checkpointing on for both). Figures: training tokens/s (ours from metrics.jsonl, the peer's
# from Trainer.train's wall time) and the whole process's peak RSS (/usr/bin/time).
# AUTOTRAIN_BENCH_TRAINER=dpo: DPO instead, against TRL's DPOTrainer, on configs/example-dpo/data's 160 pairs (two
# epochs, beta 0.1, max_length 256, no evaluation); tokens are those of each pair's chosen and rejected sequences.
# AUTOTRAIN_BENCH_TRAINER=orpo: ORPO on the same pairs, against TRL's ORPOTrainer; =reward: a reward model on them,
# against TRL's RewardTrainer (the prompt prepended; tokens those of each pair's two sequences).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
ARCH="${AUTOTRAIN_BENCH_ARCH:-llama}"
[[ $ARCH == llama || $ARCH == qwen3 ]] || { echo "AUTOTRAIN_BENCH_ARCH must be llama or qwen3" >&2; exit 2; }
TRAINER="${AUTOTRAIN_BENCH_TRAINER:-sft}"
[[ $TRAINER == sft || $TRAINER == dpo || $TRAINER == orpo || $TRAINER == reward ]] ||
  { echo "AUTOTRAIN_BENCH_TRAINER must be sft, dpo, orpo or reward" >&2; exit 2; }
DIR="${BENCH_DIR:-/tmp/autotrain_bench_train}$( [ "$ARCH" = llama ] || echo "-$ARCH" )"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
mkdir -p "$DIR"

if [ ! -f "$DIR/model/config.json" ]; then
  "$PYTHON" - "$DIR/model" "$BUILD/fixtures/tokenizers/sentencepiece" "$ARCH" <<'PY'
import shutil, sys, torch
from pathlib import Path
import transformers
out, tok, arch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
sizes = dict(vocab_size=1000, hidden_size=640, intermediate_size=1728, num_hidden_layers=14, num_attention_heads=10,
             num_key_value_heads=5, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False)
if arch == "qwen3":
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=64, **sizes))
else:
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes))
print(f"bench model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
model.save_pretrained(out)
for item in tok.iterdir():
    shutil.copy(item, out / item.name)
PY
fi

peak_rss_mb() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1" | awk '{printf "%.0f", $1 / 1024}'; }

printf "%-6s %14s %14s %8s %12s %12s %8s\n" quant "ours tok/s" "peer tok/s" ratio "ours MB" "peer MB" ratio
for quant in int4 none; do
  cfg="$DIR/params-$TRAINER-$quant.json"
  if [[ $TRAINER != sft ]]; then
    data='"data_path": "'"$ROOT"'/configs/example-dpo/data", "trainer": "'"$TRAINER"'", "prompt_text_column": "prompt",
 "text_column": "chosen", "rejected_text_column": "rejected", "dpo_beta": 0.1, "valid_split": null, "epochs": 2,'
  else
    data='"data_path": "'"$ROOT"'/configs/example/data", "text_column": "text", "add_eos_token": true, "epochs": 1,'
  fi
  cat > "$cfg" <<JSON
{"model": "$DIR/model", "project_name": "run-$quant", $data
 "block_size": 256, "mixed_precision": "none", "lr": 0.0002, "batch_size": 4, "gradient_accumulation": 1,
 "optimizer": "adamw_torch", "scheduler": "linear", "warmup_ratio": 0.1, "quantization": "$quant",
 "target_modules": "q_proj, k_proj, v_proj, o_proj", "peft": true,
 "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "seed": 42, "logging_steps": 1000}
JSON
  rm -rf "$DIR/run-$quant"
  (cd "$DIR" && /usr/bin/time -v "$BUILD/autotrain" --log-level warn train --config "$cfg" --no-resume \
    --cache-dir "$DIR/cache" 2> "$DIR/ours-$quant.time" >/dev/null)
  ours_tps=$("$PYTHON" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(round([x for x in r if 'loss' in x][-1]['tokens_per_second']))" "$DIR/run-$quant/metrics.jsonl")
  (cd "$DIR" && /usr/bin/time -v "$PYTHON" "$ROOT/tools/bench_train_peer.py" --config "$cfg" \
    2> "$DIR/peer-$quant.time" > "$DIR/peer-$quant.json")
  peer_tps=$("$PYTHON" -c "import json,sys; print(round(json.loads(open(sys.argv[1]).read().splitlines()[-1])['tokens_per_second']))" "$DIR/peer-$quant.json")
  ours_mb=$(peak_rss_mb "$DIR/ours-$quant.time"); peer_mb=$(peak_rss_mb "$DIR/peer-$quant.time")
  printf "%-6s %14s %14s %8.2f %12s %12s %8.2f\n" "$quant" "$ours_tps" "$peer_tps" \
    "$(echo "$ours_tps / $peer_tps" | bc -l)" "$ours_mb" "$peer_mb" "$(echo "$ours_mb / $peer_mb" | bc -l)"
done
