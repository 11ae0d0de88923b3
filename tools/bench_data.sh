#!/usr/bin/env bash
# Benchmark: reading a Hub-style Parquet dataset (src/parquet.cpp through data.h) and a save_to_disk folder of
# Arrow files (src/arrow_ipc.cpp) against pyarrow and `datasets`.
#
#   tools/bench_data.sh [BUILD_DIR] [ROWS]      (defaults: build, 200000)
#
# 1. writes ROWS rows (a ~1 KB "text" from tests/data/multilingual.txt and a 3-message "messages" conversation) as
#    the Hub lays a dataset out, data/train-0000N-of-00004.parquet, with datasets' Dataset.to_parquet (snappy,
#    dictionary pages), the same rows as train.jsonl beside it and as a DatasetDict saved by save_to_disk (saved/,
#    4 shards of .arrow files: AutoTrain's own prepared data), as one Parquet file of one row group (as
#    pq.write_table and pandas' to_parquet write up to 1 Mi rows) and as one Feather V2 file as write_feather writes
#    it (LZ4-compressed buffers, 64 Ki-row batches; named .arrow) (in $BENCH_DIR, default /tmp/autotrain_bench_data;
#    kept for later runs);
# 2. reads the train split's two columns, each under /usr/bin/time (wall time, peak RSS), the second of two runs:
#      ours      BUILD_DIR/bench_data (every cell to JSON, as the trainers get them);
#      pyarrow   pq.read_table(files, columns).to_pylist() (every cell to a Python object);
#      datasets  load_dataset(folder, split="train") into a fresh cache, then every cell of the two columns, as
#                AutoTrain reads a dataset (its Arrow cache written once, then memory-mapped);
#    and ours on the JSONL copy; then the saved folder: ours; pyarrow (each .arrow file's stream to_pylist());
#    datasets (load_from_disk(folder)["train"], every cell of the two columns, as AutoTrain reads its prepared data);
#    then the one-group file: ours, pyarrow (read_table(...).to_pylist()); then the Feather file: ours, pyarrow
#    (open_file(...).read_all().to_pylist());
# 3. prints the speed ratios (the peers' seconds over ours on the same files) and peak RSS.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
ROWS="${2:-200000}"
DIR="${BENCH_DIR:-/tmp/autotrain_bench_data}"
PYTHON="${AUTOTRAIN_PYTHON:-$(sed -n 's/^AUTOTRAIN_PYTHON:FILEPATH=//p' "$BUILD/CMakeCache.txt")}"
cmake --build "$BUILD" -j2 --target bench_data >/dev/null

if [ "$(cat "$DIR/.rows" 2>/dev/null)" != "v4 $ROWS" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR/hub/data"
  "$PYTHON" - "$DIR" "$ROWS" "$ROOT/tests/data/multilingual.txt" <<'PY'
import json, random, sys
import datasets
datasets.disable_progress_bars()
folder, rows, corpus = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [l.strip() for l in open(corpus, encoding="utf-8") if l.strip()]
random.seed(0)
def text():
    out = []
    while sum(len(s) for s in out) < 1000:
        out.append(random.choice(lines))
    return " ".join(out)
records = [{"text": text(), "messages": [{"role": "system", "content": "Answer briefly."},
                                         {"role": "user", "content": random.choice(lines)},
                                         {"role": "assistant", "content": random.choice(lines)}]}
           for _ in range(rows)]
data = datasets.Dataset.from_list(records)
for shard in range(4):
    data.shard(4, shard, contiguous=True).to_parquet(f"{folder}/hub/data/train-{shard:05d}-of-00004.parquet")
datasets.DatasetDict({"train": data}).save_to_disk(f"{folder}/saved", num_shards={"train": 4})
import os, pyarrow.parquet as pq
os.makedirs(f"{folder}/one_group")
pq.write_table(data.data.table, f"{folder}/one_group/train.parquet", row_group_size=rows)  # pandas' / pyarrow's way
from pyarrow import feather
os.makedirs(f"{folder}/feather")
feather.write_feather(data.data.table, f"{folder}/feather/train.arrow")  # LZ4, as pandas' to_feather
with open(f"{folder}/train.jsonl", "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
PY
  echo "v4 $ROWS" > "$DIR/.rows"
fi
echo "dataset: $ROWS rows, parquet $(du -sh "$DIR/hub/data" | cut -f1) in 4 shards," \
     "arrow $(du -sh "$DIR/saved" | cut -f1) in 4 shards, jsonl $(du -sh "$DIR/train.jsonl" | cut -f1); $(nproc) cores"

measure() {  # NAME COMMAND...: the second of two runs; prints "NAME seconds peak_kb"
  local name=$1 log
  shift
  log=$(mktemp)
  "$@" >/dev/null 2>&1 || { echo "bench_data: $name failed: $*" >&2; exit 1; }
  /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null 2>&1
  echo "$name $(cat "$log")"
  rm -f "$log"
}
peer=$(mktemp --suffix=.py)
trap 'rm -f "$peer"' EXIT
cat > "$peer" <<'PY'
import glob, sys, tempfile
folder, which = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{folder}/hub/data/*.parquet"))
columns = ["text", "messages"]
if which == "pyarrow":
    import pyarrow.parquet as pq
    n = len(pq.read_table(files, columns=columns).to_pylist())
elif which == "pyarrow_group":
    import pyarrow.parquet as pq
    n = len(pq.read_table(f"{folder}/one_group/train.parquet", columns=columns).to_pylist())
elif which == "pyarrow_lz4":
    import pyarrow as pa
    with pa.memory_map(f"{folder}/feather/train.arrow") as source:
        n = len(pa.ipc.open_file(source).read_all().select(columns).to_pylist())
elif which == "pyarrow_arrow":
    import pyarrow as pa
    n = 0
    for path in sorted(glob.glob(f"{folder}/saved/train/*.arrow")):
        with pa.memory_map(path) as source:
            n += len(pa.ipc.open_stream(source).read_all().select(columns).to_pylist())
elif which == "datasets_arrow":
    import datasets
    data = datasets.load_from_disk(f"{folder}/saved")["train"]
    n = 0
    for batch in data.select_columns(columns).iter(batch_size=1000):
        n += len(batch["text"]) + 0 * len(batch["messages"])
else:
    import datasets
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        data = datasets.load_dataset(f"{folder}/hub", split="train", cache_dir=cache)
        n = 0
        for batch in data.iter(batch_size=1000):
            n += len(batch["text"]) + 0 * len(batch["messages"])
assert n > 0
PY
results=$(
  measure ours "$BUILD/bench_data" "$DIR/hub" train text messages
  measure ours_jsonl "$BUILD/bench_data" "$DIR/train.jsonl" train text messages
  measure pyarrow "$PYTHON" "$peer" "$DIR" pyarrow
  measure datasets "$PYTHON" "$peer" "$DIR" datasets
  measure ours_arrow "$BUILD/bench_data" "$DIR/saved" train text messages
  measure pyarrow_arrow "$PYTHON" "$peer" "$DIR" pyarrow_arrow
  measure datasets_arrow "$PYTHON" "$peer" "$DIR" datasets_arrow
  measure ours_group "$BUILD/bench_data" "$DIR/one_group/train.parquet" train text messages
  measure pyarrow_group "$PYTHON" "$peer" "$DIR" pyarrow_group
  measure ours_lz4 "$BUILD/bench_data" "$DIR/feather/train.arrow" train text messages
  measure pyarrow_lz4 "$PYTHON" "$peer" "$DIR" pyarrow_lz4
)
echo "$results" | while read -r name seconds kb; do printf '%-15s %7.2f s  peak RSS %6.0f MB\n' "$name" "$seconds" "$((kb / 1024))"; done
# Each peer against ours on the same files: X_arrow against ours_arrow, X_group against ours_group, X_lz4 against
# ours_lz4, the rest (and
# our JSONL reader) against ours.
echo "$results" | awk '
  { seconds[$1] = $2; kb[$1] = $3; order[NR] = $1 }
  END {
    for (i = 1; i <= NR; ++i) {
      name = order[i]
      base = name ~ /_arrow$/ ? "ours_arrow" : name ~ /_group$/ ? "ours_group" : name ~ /_lz4$/ ? "ours_lz4" : "ours"
      if (name != base)
        printf "%s / %s: %.2f x the time, %.2f x the peak RSS\n", name, base, seconds[name] / seconds[base],
               kb[name] / kb[base]
    }
  }'
