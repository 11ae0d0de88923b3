#!/usr/bin/env bash
# End-to-end QLoRA on a GPU: ours (`autotrain train --device cuda`) against transformers + PEFT +
# bitsandbytes (tools/bench_gpu_peer.py) on the same random-weight Llama, data, block size, batch, rank
# and target modules, one after the other on the same card. Not a test.
#
#   tools/bench_gpu.sh BUILD_DIR SHAPE STEPS [extra bench_gpu_peer.py run settings...]
#     e.g. tools/bench_gpu.sh build-device 1b 10 --lora-dropout 0
#
# Tokens/s: ours from metrics.jsonl's per-step times after 3 warm-up steps, the peer's over STEPS steps
# after 3 warm-up steps (each step synchronised). Peak GPU memory: the card's memory in use (nvidia-smi,
# sampled every 100 ms) during each run, so both count their CUDA context and allocator slack alike; each
# side's own figure is printed too. Prints a Markdown row per side and a JSON summary line.
# BENCH_GPU_VARIANTS="NAME=VALUE ...": after that, ours once more per setting, each against the same peer run.
# BENCH_GPU_PROFILE=1: each side then profiles two more steps, outside the timed ones, into $WORK/ours-profile.json
# and $WORK/peer-profile.json, each with a .summary.txt of the time per kernel / operator.
set -euo pipefail
(($# >= 3)) || { echo "usage: tools/bench_gpu.sh BUILD_DIR SHAPE STEPS [peer run settings...]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "$1" && pwd)"
SHAPE="$2"
STEPS="$3"
shift 3
WORK="${BENCH_GPU_WORK:-/tmp/bench-gpu-$SHAPE}"
PEER="$ROOT/tools/bench_gpu_peer.py"
settings=(--block-size 1024 --batch-size 4 --lora-r 16 --lora-alpha 32 --target-modules all-linear
          --quantization int4 --precision bf16 "$@")

if [[ ! -f "$WORK/model/config.json" ]]; then
  python3 "$PEER" make-model --shape "$SHAPE" --out "$WORK"
fi

# The card's memory in use, sampled while `$@` runs; prints the peak in MiB on fd 3.
with_memory_peak() {
  local samples="$WORK/memory.$$"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$samples" &
  local sampler=$!
  local status=0
  "$@" || status=$?
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sort -n "$samples" | tail -1 >&3
  rm -f "$samples"
  return $status
}

profile_steps=0
ours_profile=()
peer_profile=()
if [[ -n "${BENCH_GPU_PROFILE:-}" ]]; then
  profile_steps=2
  ours_profile=(env AUTOTRAIN_PROFILE="$WORK/ours-profile.json"
                AUTOTRAIN_PROFILE_STEPS="$((STEPS + 4))-$((STEPS + 5))")
  peer_profile=(--profile "$WORK/peer-profile.json")
fi

idle_mib=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)

# ---- ours ----
python3 "$PEER" ours-config --model "$WORK/model" --data "$WORK/data" "${settings[@]}" --out "$WORK/ours.json"
rm -rf "$WORK/ours-run"
mkdir -p "$WORK/ours-run"
ours_peak=$( (cd "$WORK/ours-run" && with_memory_peak "${ours_profile[@]}" "$BUILD/autotrain" train \
              --config "$WORK/ours.json" --no-resume --device cuda --stop-after-steps $((STEPS + 3 + profile_steps)) \
              >"$WORK/ours.log" 2>&1) 3>&1) \
  || { tail -30 "$WORK/ours.log"; exit 1; }
tail -5 "$WORK/ours.log"

# ---- the peer ----
peer_peak=$( (with_memory_peak python3 "$PEER" peft --model "$WORK/model" --data "$WORK/data" --steps "$STEPS" \
              --warmup-steps 3 "${settings[@]}" "${peer_profile[@]}" >"$WORK/peer.json" 2>"$WORK/peer.log") 3>&1) \
  || { tail -30 "$WORK/peer.log"; exit 1; }

# The summary of one of our runs against the peer's: summarize METRICS OURS_PEAK LABEL.
summary_py=$(cat <<'PY'
import json, sys
metrics_path, peer_path, ours_peak, peer_peak, idle, shape, timed = sys.argv[1:]
records = [json.loads(line) for line in open(metrics_path) if line.strip()]
steps = [r for r in records if "step" in r and "time" in r and not r.get("skipped")]
peer = json.loads(open(peer_path).read().strip().splitlines()[-1])
tokens_per_step = peer["batch_size"] * peer["block_size"] * peer["gradient_accumulation"]
# after 3 warm-up steps: from the end of step 3 to the end of the last timed one (profiled ones come after)
first, last = steps[2], steps[min(len(steps) - 1, 2 + int(timed))]
ours_tps = tokens_per_step * (last["step"] - first["step"]) / (last["time"] - first["time"])
ours_own = max((r.get("gpu_memory_bytes") or 0) for r in steps)
summary = {
    "shape": shape, "device": peer["device"], "timed_steps_ours": last["step"] - first["step"],
    "timed_steps_peer": peer["steps"], "tokens_per_step": tokens_per_step,
    "ours_tokens_per_s": ours_tps, "peer_tokens_per_s": peer["tokens_per_s"],
    "speed_ratio": ours_tps / peer["tokens_per_s"],
    "ours_peak_card_mib": int(ours_peak), "peer_peak_card_mib": int(peer_peak), "idle_card_mib": int(idle),
    "memory_ratio": (int(ours_peak) - int(idle)) / max(1, int(peer_peak) - int(idle)),
    "ours_gpu_memory_bytes_metric": ours_own, "peer_peak_reserved_bytes": peer["peak_reserved_bytes"],
    "peer_peak_alloc_bytes": peer["peak_alloc_bytes"], "ours_last_loss": last.get("loss"),
    "peer_final_loss": peer["final_loss"], "settings": {k: peer[k] for k in (
        "block_size", "batch_size", "gradient_accumulation", "lora_r", "target_modules", "quantization",
        "precision", "compute_dtype", "gradient_checkpointing")},
}
print(f"| {shape} | ours | {ours_tps:,.0f} | {int(ours_peak) - int(idle):,} MiB |")
print(f"| {shape} | PEFT + bitsandbytes | {peer['tokens_per_s']:,.0f} | {int(peer_peak) - int(idle):,} MiB |")
print(f"speed {summary['speed_ratio']:.2f}x, peak memory {summary['memory_ratio']:.2f}x (card memory in use above idle)")
print("JSON " + json.dumps(summary))
PY
)
summarize() { python3 -c "$summary_py" "$1" "$WORK/peer.json" "$2" "$peer_peak" "$idle_mib" "$3" "$STEPS"; }
summarize "$WORK/ours-run/bench-gpu/metrics.jsonl" "$ours_peak" "$SHAPE"

# BENCH_GPU_VARIANTS="NAME=VALUE ...": ours again with each environment setting (e.g. AUTOTRAIN_NF4_MATMUL=fused),
# against the same peer run.
for variant in ${BENCH_GPU_VARIANTS:-}; do
  dir="$WORK/ours-run-${variant//[^A-Za-z0-9]/_}"
  rm -rf "$dir"
  mkdir -p "$dir"
  if peak=$( (cd "$dir" && with_memory_peak env "$variant" "$BUILD/autotrain" train --config "$WORK/ours.json" \
              --no-resume --device cuda --stop-after-steps $((STEPS + 3)) >"$dir.log" 2>&1) 3>&1); then
    summarize "$dir/bench-gpu/metrics.jsonl" "$peak" "$SHAPE $variant"
  else
    echo "$variant: failed"
    tail -10 "$dir.log"
  fi
done
