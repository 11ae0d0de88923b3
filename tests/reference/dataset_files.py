#!/usr/bin/env python3
"""Oracle for the dataset readers and block packing: writes dataset files in every supported format and
what Python's json / csv modules (and, for JSON Lines in a .json file, datasets' json builder) read from them (also
gzip- and zstd-compressed copies), plus AutoTrain's group_texts() on fixed id lists.
Writes reference/datasets/."""
import argparse
import csv
import json
import random
from pathlib import Path

TEXTS = [
    "plain text",
    "comma, inside",
    'a "quoted" word',
    "two\nlines",
    "windows\r\nline end",
    "안녕하세요, 세계! 학습 데이터입니다.",
    "emoji 😀👍🏽 and 中文",
    "  leading and trailing spaces  ",
    "tab\tseparated",
    "",  # an empty text is a record too
    "x" * 5000,
]


def group_texts(examples, block_size):
    """AutoTrain's default trainer (trainers/clm/utils.py group_texts): concatenate, drop the remainder."""
    concatenated = sum(examples, [])
    total_length = (len(concatenated) // block_size) * block_size
    return [concatenated[i:i + block_size] for i in range(0, total_length, block_size)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "datasets"
    out.mkdir(parents=True, exist_ok=True)
    records = [{"id": i, "text": t, "other": "x"} for i, t in enumerate(TEXTS)]
    with open(out / "train.jsonl", "w", encoding="utf-8", newline="") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "train.json").write_text(json.dumps(records, ensure_ascii=True), encoding="utf-8")
    # JSON Lines in a .json file: datasets' json builder reads it so (only a leading '[' makes it an array).
    (out / "lines.json").write_text((out / "train.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    import tempfile
    import datasets
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        json_lines = list(datasets.load_dataset("json", data_files=str(out / "lines.json"), split="train",
                                                cache_dir=cache)["text"])
    with open(out / "train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "other"])  # quotes fields as needed, \r\n rows
        writer.writeheader()
        writer.writerows(records)
    with open(out / "train.csv", encoding="utf-8", newline="") as f:
        csv_texts = [row["text"] for row in csv.DictReader(f)]
    # Compressed whole, as datasets reads them: gzip of two members, zstd of two frames cut mid-record (pyarrow's
    # zstd codec writes standard frames).
    import gzip
    import pyarrow as pa
    jsonl = (out / "train.jsonl").read_bytes()
    half = len(jsonl) // 2
    (out / "records.jsonl.gz").write_bytes(gzip.compress(jsonl[:half]) + gzip.compress(jsonl[half:]))
    csv_bytes = (out / "train.csv").read_bytes()
    (out / "records.csv.zst").write_bytes(pa.compress(csv_bytes[:101], codec="zstd", asbytes=True) +
                                          pa.compress(csv_bytes[101:], codec="zstd", asbytes=True))
    txt_lines = [t for t in TEXTS if t and "\n" not in t and "\r" not in t]
    (out / "train.txt").write_text("\n".join(txt_lines) + "\n", encoding="utf-8")
    random.seed(7)
    id_lists = [[random.randrange(1000) for _ in range(random.randrange(0, 40))] for _ in range(50)]
    packing = {str(b): group_texts(id_lists, b) for b in (1, 7, 16, 64, 5000)}
    (out / "expected.json").write_text(json.dumps({
        "jsonl": [r["text"] for r in records], "json": [r["text"] for r in records], "csv": csv_texts,
        "json_lines": json_lines,
        "txt": txt_lines, "id_lists": id_lists, "packing": packing}, ensure_ascii=False))


if __name__ == "__main__":
    main()
