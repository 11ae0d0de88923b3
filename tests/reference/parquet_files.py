#!/usr/bin/env python3
"""Oracle for the Parquet reader (src/parquet.cpp) and the split layouts of datasets folders (src/data.cpp).

Writes reference/parquet/:
  files/NAME.parquet  the same records written by pyarrow in each way a writer may choose (codec: snappy, zstd, gzip,
                      none, LZ4_RAW; page version, dictionary or not, DELTA encodings, tiny pages and row groups,
                      legacy list names), 250 times over in one row group of 2 KB pages (one_group_*), by `datasets`
                      (Dataset.to_parquet, the Hub's writer), and with a codec autotrain refuses (Brotli)
  layouts/NAME/       dataset folders as `datasets` lays them out (the Hub's data/SPLIT-00000-of-00002.parquet,
                      the parquet converter's default/SPLIT/0000.parquet, files named for a split, plain files,
                      README.md dataset cards with configs)
  cache/              a Hugging Face cache holding the dataset acme/chat-pairs (datasets--acme--chat-pairs)
  expected.json
    "files":    {NAME: pyarrow.parquet.read_table(file).to_pylist(), the rows as JSON}
    "refused":  {NAME: the codec's name} for files whose pages autotrain does not decompress
    "layouts":  {NAME: {split: the texts datasets.load_dataset(folder, split=split) reads, or null when it fails;
                "CONFIG:SPLIT" as AutoTrain passes it, load_dataset(folder, name=CONFIG, split=SPLIT)}}
    "snapshot": huggingface_hub.snapshot_download("acme/chat-pairs", repo_type="dataset", local_files_only=True),
                relative to cache/; "snapshot_texts": its train split's texts"""
import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: local folders and a cache built here
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

TEXTS = ["plain text", "comma, inside", 'a "quoted" word', "two\nlines", "안녕하세요, 세계!",
         "emoji 😀👍🏽 and 中文",
         "  leading and trailing spaces  ", "", "x" * 5000, "repeat", "repeat", "repeat"]
COMMIT = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"


def records():
    rows = []
    for i, text in enumerate(TEXTS * 3):  # 36 rows: several pages and row groups when those are small
        messages = [{"role": "user", "content": f"question {i}: {text}"},
                    {"role": "assistant", "content": None if i % 7 == 3 else f"answer {i}"}]
        rows.append({
            "text": None if i % 11 == 5 else text,
            "id": i * 1_000_003 - 17,
            "small": i - 20,
            "score": i / 7,
            "weight": float(i) / 4,
            "flag": i % 3 == 0,
            "messages": [] if i % 9 == 4 else None if i % 13 == 6 else messages[: 1 + i % 2],
            "tags": [f"t{j}" for j in range(i % 4)],
            "meta": None if i % 5 == 2 else {"source": f"src{i % 3}", "turns": i % 4, "lang": None if i % 2 else "en"},
        })
    return rows


SCHEMA = pa.schema([
    ("text", pa.string()),
    ("id", pa.int64()),
    ("small", pa.int32()),
    ("score", pa.float64()),
    ("weight", pa.float32()),
    ("flag", pa.bool_()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("tags", pa.list_(pa.string())),
    ("meta", pa.struct([("source", pa.string()), ("turns", pa.int64()), ("lang", pa.string())])),
])

STRING_COLUMNS = ["text", "messages.list.element.role", "messages.list.element.content", "tags.list.element",
                  "meta.source", "meta.lang"]

# name: pq.write_table keyword arguments
VARIANTS = {
    "snappy_dictionary_v1": {},  # pyarrow's defaults: snappy, dictionary pages, data page v1
    "zstd_v2": {"compression": "zstd", "data_page_version": "2.0"},
    "gzip_plain": {"compression": "gzip", "use_dictionary": False},
    "uncompressed_v2_plain": {"compression": "none", "use_dictionary": False, "data_page_version": "2.0"},
    "delta_byte_array": {"compression": "none", "use_dictionary": False,
                         "column_encoding": {**{c: "DELTA_BYTE_ARRAY" for c in STRING_COLUMNS},
                                             "id": "DELTA_BINARY_PACKED", "small": "DELTA_BINARY_PACKED",
                                             "meta.turns": "DELTA_BINARY_PACKED"}},
    "delta_length_v2": {"compression": "snappy", "use_dictionary": False, "data_page_version": "2.0",
                        "column_encoding": {c: "DELTA_LENGTH_BYTE_ARRAY" for c in STRING_COLUMNS}},
    "tiny_pages_and_groups": {"row_group_size": 5, "data_page_size": 64, "write_batch_size": 3,
                              "dictionary_pagesize_limit": 64},
    "legacy_list_names": {"use_compliant_nested_type": False, "compression": "zstd"},
    "lz4_raw": {"compression": "lz4"},  # pyarrow 26 writes LZ4_RAW pages for "lz4" and "lz4_raw" alike
}
BIG_GROUP_VARIANTS = {
    "one_group_v1_pages": {"data_page_size": 2048},
    "one_group_v2_pages": {"data_page_size": 2048, "data_page_version": "2.0", "compression": "zstd",
                           "use_dictionary": False},
}
REFUSED = {"brotli": "Brotli"}


def to_json(value):
    """JSON as the C++ test compares it: floats kept as Python floats (float32 widened exactly)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite float in a fixture")
    return value


def write_layouts(out: Path, table: pa.Table):
    def part(rows):
        return table.slice(rows[0], rows[1] - rows[0])

    def write_parquet(path: Path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part(rows), path)

    def write_jsonl(path: Path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in part(rows).select(["text"]).to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    hub = out / "hub_shards"
    write_parquet(hub / "data" / "train-00000-of-00002.parquet", (0, 10))
    write_parquet(hub / "data" / "train-00001-of-00002.parquet", (10, 20))
    write_parquet(hub / "data" / "test-00000-of-00001.parquet", (20, 26))
    (hub / "README.md").write_text("---\nlicense: mit\n---\n")
    converter = out / "parquet_converter"
    write_parquet(converter / "default" / "train" / "0000.parquet", (0, 12))
    write_parquet(converter / "default" / "train" / "0001.parquet", (12, 30))
    write_parquet(converter / "default" / "validation" / "0000.parquet", (30, 36))
    named = out / "named_files"
    write_jsonl(named / "train-part1.jsonl", (0, 8))
    write_jsonl(named / "more_train_2.jsonl", (8, 16))
    write_jsonl(named / "dev.jsonl", (16, 24))
    write_jsonl(named / "eval.jsonl", (24, 30))
    plain = out / "plain_files"
    write_jsonl(plain / "a.jsonl", (0, 10))
    write_jsonl(plain / "nested" / "b.jsonl", (10, 20))
    write_jsonl(plain / ".hidden" / "c.jsonl", (20, 30))
    # A dataset card with configs (datasets' MetadataConfigs), in the YAML styles cards are written in.
    configs = out / "card_configs"
    write_parquet(configs / "en" / "train-00000-of-00002.parquet", (0, 7))
    write_parquet(configs / "en" / "train-00001-of-00002.parquet", (7, 14))
    write_parquet(configs / "en" / "test.parquet", (14, 18))
    write_parquet(configs / "fr" / "a.parquet", (18, 22))
    write_parquet(configs / "fr" / "b.parquet", (22, 26))
    write_parquet(configs / "de" / "train.parquet", (26, 30))
    write_parquet(configs / "de" / "validation.parquet", (30, 33))
    write_parquet(configs / "de" / "deep" / "more" / "x.parquet", (33, 36))
    (configs / "README.md").write_text("""---
license: mit
# a comment
configs:
- config_name: en
  default: true
  data_files:
  - split: train
    path: "en/train-*"
  - split: test
    path: en/test.parquet   # a comment after a value
- config_name: fr
  data_files: fr/*.parquet
- config_name: 'all'
  data_files:
    - split: train
      path: [en/train-*, 'fr/*.parquet']
- config_name: inferred
  data_dir: de
- config_name: deep
  data_files:
  - split: train
    path:
    - de/**/*.parquet
dataset_info:
  features:
  - name: text
    dtype: string
---
# A dataset card
""")
    nodefault = out / "card_no_default"
    write_jsonl(nodefault / "a" / "train.jsonl", (0, 5))
    write_jsonl(nodefault / "b" / "train.jsonl", (5, 10))
    (nodefault / "README.md").write_text(
        "---\nconfigs:\n  - config_name: a\n    data_files: a/train.jsonl\n"
        "  - config_name: b\n    data_files: b/train.jsonl\n---\n")


def load_layouts(layouts: Path):
    import datasets
    result = {}
    splits = ["train", "validation", "test"]
    card_splits = splits + [f"{name}:{split}" for name in ("en", "fr", "all", "inferred", "deep", "xx")
                            for split in splits]
    with tempfile.TemporaryDirectory() as cache:
        for folder in sorted(p for p in layouts.iterdir() if p.is_dir()):
            result[folder.name] = {}
            wanted = card_splits if folder.name == "card_configs" else (
                splits + ["a:train"] if folder.name == "card_no_default" else splits)
            for spec in wanted:
                # AutoTrain: "CONFIG:SPLIT" -> load_dataset(data_path, name=CONFIG, split=SPLIT)
                name, split = spec.split(":") if ":" in spec else (None, spec)
                try:
                    data = datasets.load_dataset(str(folder), name=name, split=split, cache_dir=cache)
                    result[folder.name][spec] = list(data["text"])
                except (ValueError, FileNotFoundError, KeyError):
                    result[folder.name][spec] = None
    return result


def write_hub_cache(cache: Path, table: pa.Table):
    """huggingface_hub's cache layout: blobs, refs/main, snapshots/COMMIT/... as relative symlinks to blobs."""
    repo = cache / "datasets--acme--chat-pairs"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT / "data"
    snapshot.mkdir(parents=True, exist_ok=True)
    blob = repo / "blobs" / "5a1e0f"
    pq.write_table(table.slice(0, 9), blob)
    (snapshot / "train-00000-of-00001.parquet").symlink_to(os.path.relpath(blob, snapshot))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "parquet"
    if out.exists():
        shutil.rmtree(out)
    (out / "files").mkdir(parents=True)
    table = pa.Table.from_pylist(records(), schema=SCHEMA)
    expected = {"files": {}, "refused": {}}
    for name, options in VARIANTS.items():
        path = out / "files" / f"{name}.parquet"
        pq.write_table(table, path, **options)
        expected["files"][name] = [{k: to_json(v) for k, v in row.items()} for row in pq.read_table(path).to_pylist()]

    # 9000 rows in one row group of many small pages (pyarrow's defaults for a table this size: one group), so that a
    # reader holding a few pages at a time moves through thousands of entries of each column.
    rows = [dict(r, text=r["text"] if r["text"] is None or len(r["text"]) < 100 else "long")
            for _ in range(250) for r in records()]
    big = pa.Table.from_pylist(rows, schema=SCHEMA)
    for name, options in BIG_GROUP_VARIANTS.items():
        path = out / "files" / f"{name}.parquet"
        pq.write_table(big, path, row_group_size=len(rows), **options)
        assert pq.ParquetFile(path).metadata.num_row_groups == 1
        expected["files"][name] = [{k: to_json(v) for k, v in row.items()} for row in pq.read_table(path).to_pylist()]

    import datasets
    datasets.disable_progress_bars()
    path = out / "files" / "datasets_to_parquet.parquet"
    datasets.Dataset.from_list(records()).to_parquet(str(path))
    expected["files"]["datasets_to_parquet"] = pq.read_table(path).to_pylist()

    for codec, name in REFUSED.items():
        pq.write_table(table, out / "files" / f"{codec}.parquet", compression=codec)
        expected["refused"][codec] = name

    write_layouts(out / "layouts", table)
    expected["layouts"] = load_layouts(out / "layouts")

    write_hub_cache(out / "cache", table)
    from huggingface_hub import snapshot_download
    snapshot = snapshot_download("acme/chat-pairs", repo_type="dataset", cache_dir=str(out / "cache"),
                                 local_files_only=True)
    expected["snapshot"] = os.path.relpath(snapshot, out / "cache")
    snapshot_file = Path(snapshot) / "data" / "train-00000-of-00001.parquet"
    expected["snapshot_texts"] = pq.read_table(snapshot_file)["text"].to_pylist()
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=0))


if __name__ == "__main__":
    main()
