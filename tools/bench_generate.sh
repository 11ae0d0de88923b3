#!/usr/bin/env bash
# Generation on a GPU: ours (`autotrain generate --device cuda`) against transformers (+ bitsandbytes for int4,
# tools/bench_gpu_peer.py generate) on one model folder and prompt, greedy, batch 1, past eos, one after the other
# on the same card. Not a test.
#
#   tools/bench_generate.sh BUILD_DIR MODEL_DIR [NEW_TOKENS (128)] [QUANTIZATION: int4 (default) | none]
#     e.g. tools/bench_generate.sh build-device /tmp/bench-8b/model 128 int4
#
# Each side: the first token's latency (the prompt's forward), then tokens/s over the others (one forward of one
# position each: on an int4 base, a GEMV per projection), and the card's memory in use at the end (both count
# their CUDA context). Ours comes from the line `autotrain generate` logs after the text; it runs in a fresh
# process without a warm-up (its first token pays cuBLAS's start), the peer after one. Prints a Markdown table with
# the ratios and one JSON line. BENCH_GENERATE_DTYPE (bf16), BENCH_GENERATE_PROMPT change the run.
set -euo pipefail
(($# >= 2)) || { echo "usage: tools/bench_generate.sh BUILD_DIR MODEL_DIR [NEW_TOKENS] [int4|none]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "$1" && pwd)"
MODEL="$2"
NEW="${3:-128}"
QUANT="${4:-int4}"
DTYPE="${BENCH_GENERATE_DTYPE:-bf16}"
PROMPT="${BENCH_GENERATE_PROMPT:-The quick brown fox jumps over the lazy dog, and then the fox}"

ours=$("$BUILD/autotrain" generate --model "$MODEL" --prompt "$PROMPT" --max-new-tokens "$NEW" --ignore-eos \
         --dtype "$DTYPE" --quantization "$QUANT" --device cuda 2>&1 >/dev/null | grep "generate: " | tail -1)
echo "ours: $ours"
peer=$(python3 "$ROOT/tools/bench_gpu_peer.py" generate --model "$MODEL" --prompt "$PROMPT" --new-tokens "$NEW" \
         --quantization "$QUANT" --dtype "$DTYPE" | tail -1)
echo "peer: $peer"
python3 - "$ours" "$peer" <<'PY'
import json, re, sys
ours_line, peer = sys.argv[1], json.loads(sys.argv[2])
def number(pattern):
    found = re.search(pattern, ours_line)
    if not found:
        sys.exit(f"bench_generate: no {pattern!r} in ours' line: {ours_line!r}")
    return found.group(1)
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
value, unit = re.search(r"GPU memory in use ([0-9.]+) (\w+)", ours_line).groups()
ours = {"side": "ours", "new_tokens": int(number(r"(\d+) new tokens")),
        "prompt_tokens": int(number(r"a prompt of (\d+) tokens")),
        "first_token_ms": float(number(r"first after ([0-9.]+) ms")),
        "tokens_per_s": float(number(r"then ([0-9.]+) tokens/s")),
        "memory_in_use_bytes": float(value) * units[unit]}
mib = lambda b: b / (1 << 20)
print(f"\n| {peer['quantization']}, {peer['dtype']}, {ours['new_tokens']} new tokens after {ours['prompt_tokens']} "
      "| tokens/s | first token ms | GPU memory in use |\n|---|---|---|---|")
print(f"| ours | {ours['tokens_per_s']:.1f} | {ours['first_token_ms']:.1f} | {mib(ours['memory_in_use_bytes']):,.0f} MiB |")
print(f"| {peer['peer']} | {peer['tokens_per_s']:.1f} | {peer['first_token_ms']:.1f} | "
      f"{mib(peer['memory_in_use_bytes']):,.0f} MiB |")
ratio = ours["tokens_per_s"] / peer["tokens_per_s"]
memory = ours["memory_in_use_bytes"] / peer["memory_in_use_bytes"]
print(f"| ratio | **{ratio:.2f} ×** | | **{memory:.2f} ×** |")
if ours["prompt_tokens"] != peer["prompt_tokens"]:
    print(f"(the prompts tokenized differently: ours {ours['prompt_tokens']}, the peer's {peer['prompt_tokens']})")
print(json.dumps({"bench": "generate", "ours": ours, "peer": peer, "tokens_per_s_ratio": ratio,
                  "memory_ratio": memory}))
PY
