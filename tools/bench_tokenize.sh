#!/usr/bin/env bash
# Benchmark: tokenizing a dataset for training (src/token_cache.cpp through `train`'s tokenize_split) against
# AutoTrain's own tokenization, datasets.map over a transformers fast tokenizer (Rust `tokenizers`).
#
#   tools/bench_tokenize.sh [BUILD_DIR] [ROWS]      (defaults: build, 50000)
#
# 1. writes ROWS texts of ~1 KB (lines of tests/data/multilingual.txt) as train.jsonl in $BENCH_DIR (default
#    /tmp/autotrain_bench_tokenize; kept for later runs);
# 2. for the fixture tokenizers qwen2 (byte-level BPE, 151k-style pre-tokenizer), llama (sentencepiece BPE) and
#    llama_json (llama's as a sentencepiece-style tokenizer.json, no tokenizer.model), tokenizes the train split,
#    each under /usr/bin/time (wall time, peak RSS), the second of two runs:
#      ours_1 / ours_N  BUILD_DIR/bench_tokenize on 1 thread and on one per core (each text + eos, as AutoTrain's
#                       default trainer; ids into a token cache file);
#      autotrain        load_dataset("json") + map(text + eos_token) + map(tokenizer(batch), batched=True), as
#                       AutoTrain's default trainer does (tokenizers' own threads on, its default);
#    and checks that both count the same tokens;
# 3. prints the speed ratios (the peer's seconds over ours) and peak RSS.
# The fixtures' vocabularies are small (trained here on a small corpus): real ones (Llama-3's 128k, Qwen2's 151k)
# cut words into fewer, longer pieces, which changes both sides' speed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
ROWS="${2:-50000}"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_tokenize}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
cmake --build "$BUILD" -j2 --target bench_tokenize >/dev/null
CORES=$(nproc)

if [ "$(cat "$DIR/.rows" 2>/dev/null)" != "v1 $ROWS" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PYTHON" - "$DIR" "$ROWS" "$ROOT/tests/data/multilingual.txt" <<'PY'
import json, random, sys
folder, rows, corpus = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [l.strip() for l in open(corpus, encoding="utf-8") if l.strip()]
random.seed(0)
with open(f"{folder}/train.jsonl", "w", encoding="utf-8") as f:
    for _ in range(rows):
        out = []
        while sum(len(s) for s in out) < 1000:
            out.append(random.choice(lines))
        f.write(json.dumps({"text": " ".join(out)}, ensure_ascii=False) + "\n")
PY
  echo "v1 $ROWS" > "$DIR/.rows"
fi
echo "dataset: $ROWS texts, $(du -sh "$DIR/train.jsonl" | cut -f1) of JSONL; $CORES cores"

peer=$(mktemp --suffix=.py)
trap 'rm -f "$peer"' EXIT
cat > "$peer" <<'PY'
import sys, tempfile
import datasets, transformers
datasets.disable_progress_bars()
transformers.utils.logging.set_verbosity_error()
model, path = sys.argv[1], sys.argv[2]
tokenizer = transformers.AutoTokenizer.from_pretrained(model)
with tempfile.TemporaryDirectory() as cache:
    data = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)
    data = data.map(lambda batch: {"text": [t + tokenizer.eos_token for t in batch["text"]]}, batched=True)
    data = data.map(lambda batch: tokenizer(batch["text"]), batched=True, num_proc=1,
                    remove_columns=data.column_names)
    print("tokens", sum(len(ids) for ids in data["input_ids"]))
PY

measure() {  # NAME COMMAND...: the second of two runs; prints "NAME seconds peak_kb tokens"
  local name=$1 log out
  shift
  log=$(mktemp)
  "$@" >/dev/null 2>&1 || { echo "bench_tokenize: $name failed: $*" >&2; exit 1; }
  out=$(/usr/bin/time -f '%e %M' -o "$log" "$@" 2>/dev/null)
  echo "$name $(cat "$log") $(echo "$out" | awk '$1 == "tokens" {print $2}')"
  rm -f "$log"
}
# The llama fixture with its sentencepiece model as tokenizer.json (transformers' conversion, the oracle's): a
# Llama-2 / Mistral folder without tokenizer.model, where each text is one word merged through a heap.
json_folder="$DIR/llama_json"
rm -rf "$json_folder" && mkdir -p "$json_folder"
cp "$BUILD/fixtures/models/llama/config.json" "$json_folder/"
cp "$BUILD/fixtures/reference/tokenizer/spm_json/llama_class/"tokenizer*.json "$json_folder/"
for model in qwen2 llama llama_json; do
  folder="$BUILD/fixtures/models/$model"
  [ "$model" = llama_json ] && folder="$json_folder"
  results=$(
    measure ours_1 "$BUILD/bench_tokenize" "$folder" "$DIR/train.jsonl" 1
    measure "ours_$CORES" "$BUILD/bench_tokenize" "$folder" "$DIR/train.jsonl" "$CORES"
    measure autotrain "$PYTHON" "$peer" "$folder" "$DIR/train.jsonl"
  )
  echo "== $model"
  echo "$results" | while read -r name seconds kb tokens; do
    printf '%-10s %7.2f s  peak RSS %6.0f MB  %s tokens\n' "$name" "$seconds" "$((kb / 1024))" "$tokens"
  done
  echo "$results" | awk '
    { seconds[$1] = $2; kb[$1] = $3; tokens[$1] = $4; order[NR] = $1 }
    END {
      for (i = 1; i <= NR; ++i) if (tokens[order[i]] != tokens[order[1]]) { print "token counts differ"; exit 1 }
      for (i = 1; i < NR; ++i)
        printf "autotrain / %s: %.2f x the time, %.2f x the peak RSS\n", order[i],
               seconds["autotrain"] / seconds[order[i]], kb["autotrain"] / kb[order[i]]
    }'
done
