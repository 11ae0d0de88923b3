#!/usr/bin/env python3
"""Oracle for the Arrow IPC reader (datasets' .arrow files) and the folders `datasets` saves them in.

Writes reference/arrow/:
  files/NAME.arrow    the same records written by pyarrow in each way a writer may choose (the stream format in
                      batches of 7 rows, the random-access "ARROW1" file format, ZSTD bodies, LZ4 bodies (small, and
                      4320 rows in buffers past LZ4's 64 KiB blocks), Feather V2 as write_feather writes it (LZ4),
                      the legacy stream format without the 0xFFFFFFFF continuation marker, large_string/large_list,
                      a fixed-size list column, a sliced table, no batches at all), by `datasets`
                      (Dataset.save_to_disk's data-00000-of-00001.arrow), and one with column types autotrain does
                      not read (unread_types)
  layouts/NAME/       dataset folders as `datasets` lays them out: DatasetDict.save_to_disk (saved_dict, sharded),
                      Dataset.save_to_disk (saved_dataset, 3 shards), and a Hub folder of .arrow files
                      (hub_arrow: data/SPLIT-0000N-of-0000M.arrow and a README.md)
  expected.json
    "files":          {NAME: the rows pyarrow reads back (open_stream, else open_file, as datasets' arrow builder
                      does), as JSON}; for unread_types its "text", "nested" (lists of lists) and "nothing"
                      (null type) columns
    "unread_columns": {column: str(its arrow type)} for the other columns of unread_types
    "layouts":        {NAME: {split: the texts datasets.load_from_disk / load_dataset reads, or null when the
                      split is absent or loading fails}}"""
import argparse
import datetime
import decimal
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: local folders only
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
from pyarrow import feather  # noqa: E402

# The same 36 records as the Parquet oracle's (texts with nulls, numbers, a conversation, tags, a struct).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from parquet_files import TEXTS, records  # noqa: E402


def schema(string=pa.string(), list_=pa.list_):
    return pa.schema([
        ("text", string),
        ("id", pa.int64()),
        ("small", pa.int32()),
        ("score", pa.float64()),
        ("weight", pa.float32()),
        ("flag", pa.bool_()),
        ("messages", list_(pa.struct([("role", string), ("content", string)]))),
        ("tags", list_(string)),
        ("meta", pa.struct([("source", string), ("turns", pa.int64()), ("lang", string)])),
    ])


SCHEMA = schema()
N = len(TEXTS) * 3


def fixed_size_list_table():
    vec = [None if i % 6 == 1 else [i * 0.5, -i / 4, float(i * i)] for i in range(N)]
    return pa.table({"text": pa.array([r["text"] for r in records()], pa.string()),
                     "vec": pa.array(vec, pa.list_(pa.float32(), 3))})


def unread_types_table():
    """"text" and columns of types the reader may leave unread; returns (table, skipped optional types)."""
    columns = {
        "text": pa.array([r["text"] for r in records()], pa.string()),
        "ts": pa.array([None if i % 8 == 3 else datetime.datetime(2024, 1, 1 + i % 28, i % 24, 30, 15, i * 1000)
                        for i in range(N)], pa.timestamp("ms")),
        "dec": pa.array([None if i % 10 == 7 else decimal.Decimal(f"{i * 37 - 500}.{i % 100:02d}")
                         for i in range(N)], pa.decimal128(10, 2)),
        # a dictionary of values of a type not read (dictionaries of read types are: dictionary_*.arrow)
        "cat": pa.array([None if i % 9 == 2 else [b"red", b"green", b"blue"][i % 3] for i in range(N)],
                        pa.binary()).dictionary_encode(),
        "blob": pa.array([None if i % 7 == 5 else bytes([i, 0, 255, i % 5]) * (i % 3) for i in range(N)],
                         pa.binary()),
        "kv": pa.array([None if i % 11 == 4 else [(f"k{j}", i * 10 + j) for j in range(i % 3)] for i in range(N)],
                       pa.map_(pa.string(), pa.int64())),
        "nested": pa.array([None if i % 12 == 9 else [list(range(j)) for j in range(i % 4)] for i in range(N)],
                           pa.list_(pa.list_(pa.int64()))),
        "nothing": pa.nulls(N),  # all None: the null type (no buffers), as datasets types an empty column
    }
    skipped = {}
    try:  # pyarrow builds float16 from numpy's float16
        import numpy as np
        columns["half"] = pa.array(np.array([i / 8 for i in range(N)], dtype=np.float16), pa.float16())
    except (ImportError, pa.ArrowException) as e:
        skipped["half"] = str(e)
    try:
        columns["view"] = pa.array([None if i % 4 == 1 else f"view {i}" for i in range(N)], pa.string_view())
    except (AttributeError, pa.ArrowException) as e:
        skipped["view"] = str(e)
    return pa.table(columns), skipped


def dictionary_table():
    """The records with "text" dictionary-encoded (one dictionary for the table) and "tags" a list of
    dictionary-encoded strings with int8 indices."""
    table = pa.Table.from_pylist(records(), schema=SCHEMA)
    text = table.column("text").combine_chunks().dictionary_encode()
    tags = pa.array([r["tags"] for r in records()], pa.list_(pa.dictionary(pa.int8(), pa.string())))
    table = table.set_column(table.schema.get_field_index("text"), "text", text)
    return table.set_column(table.schema.get_field_index("tags"), "tags", tags)


def write_changing_dictionaries(path: Path, deltas: bool):
    """A stream of 6-row batches whose "text" dictionary changes from batch to batch: each batch's dictionary the
    previous one's with its new texts appended (written as deltas when `deltas`), or, without deltas, in another
    order each time (replacement dictionaries)."""
    texts = [r["text"] for r in records()]
    schema = pa.schema([("text", pa.dictionary(pa.int32(), pa.string())), ("id", pa.int64())])
    options = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=deltas)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema, options=options) as writer:
        seen = []
        for start in range(0, len(texts), 6):
            chunk = texts[start:start + 6]
            for t in chunk:
                if t is not None and t not in seen:
                    seen.append(t)
            dictionary = seen if deltas else list(reversed(seen))
            indices = [None if t is None else dictionary.index(t) for t in chunk]
            text = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(dictionary, pa.string()))
            writer.write_batch(pa.record_batch([text, pa.array(range(start, start + len(chunk)), pa.int64())],
                                               schema=schema))


def write_stream(path: Path, table: pa.Table, batch_rows=7, **options):
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
            for batch in table.to_batches(max_chunksize=batch_rows):
                writer.write_batch(batch)


def write_file_format(path: Path, table: pa.Table, batch_rows=10):
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=batch_rows):
                writer.write_batch(batch)


def read_arrow(path: Path) -> pa.Table:
    """As datasets' arrow builder reads a file: the stream format, else the random-access file format."""
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except (OSError, pa.lib.ArrowInvalid):
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def to_json(value):
    """JSON as the C++ test compares it: floats kept as Python floats (float32 widened exactly)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite float in a fixture")
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def write_layouts(out: Path, table: pa.Table):
    import datasets
    rows = records()
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:30]),
                          "validation": datasets.Dataset.from_list(rows[30:])}).save_to_disk(
        str(out / "saved_dict"), num_shards={"train": 2, "validation": 1})
    datasets.Dataset.from_list(rows).save_to_disk(str(out / "saved_dataset"), num_shards=3)
    hub = out / "hub_arrow"
    (hub / "data").mkdir(parents=True)
    for name, (start, stop) in {"train-00000-of-00002": (0, 10), "train-00001-of-00002": (10, 20),
                                "test-00000-of-00001": (20, 26)}.items():
        write_stream(hub / "data" / f"{name}.arrow", table.slice(start, stop - start))
    (hub / "README.md").write_text("---\nlicense: mit\n---\n")


def load_layouts(layouts: Path):
    import datasets
    splits = ["train", "validation", "test"]
    saved = datasets.load_from_disk(str(layouts / "saved_dict"))
    result = {"saved_dict": {s: list(saved[s]["text"]) if s in saved else None for s in splits},
              "saved_dataset": {"train": list(datasets.load_from_disk(str(layouts / "saved_dataset"))["text"])},
              "hub_arrow": {}}
    with tempfile.TemporaryDirectory() as cache:
        for split in splits:
            try:
                data = datasets.load_dataset(str(layouts / "hub_arrow"), split=split, cache_dir=cache)
                result["hub_arrow"][split] = list(data["text"])
            except (ValueError, FileNotFoundError, KeyError):
                result["hub_arrow"][split] = None
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "arrow"
    if out.exists():
        shutil.rmtree(out)
    files = out / "files"
    files.mkdir(parents=True)
    table = pa.Table.from_pylist(records(), schema=SCHEMA)

    write_stream(files / "stream.arrow", table)
    write_file_format(files / "file_format.arrow", table)
    write_stream(files / "zstd_body.arrow", table, compression="zstd")
    write_stream(files / "lz4_body.arrow", table, compression="lz4")
    # Feather V2 is the file format; pyarrow's write_feather (and pandas' to_feather) compress it with LZ4 frames.
    feather.write_feather(table, files / "feather_v2.arrow")
    # Buffers past LZ4's 64 KiB blocks: frames of several linked blocks, matches reaching into the block before.
    write_stream(files / "lz4_big.arrow", pa.Table.from_pylist(records() * 120, schema=SCHEMA), compression="lz4")
    write_stream(files / "legacy_format.arrow", table, use_legacy_format=True)
    write_stream(files / "large_types.arrow", table.cast(schema(pa.large_string(), pa.large_list)))
    write_stream(files / "fixed_size_list.arrow", fixed_size_list_table())
    write_stream(files / "sliced.arrow", table.slice(5, 20))
    write_stream(files / "dictionary_stream.arrow", dictionary_table())
    write_file_format(files / "dictionary_file.arrow", dictionary_table())
    write_changing_dictionaries(files / "dictionary_deltas.arrow", deltas=True)
    write_changing_dictionaries(files / "dictionary_replaced.arrow", deltas=False)
    write_stream(files / "empty.arrow", table.slice(0, 0))  # the schema message, no record batches

    import datasets
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as saved:
        datasets.Dataset.from_list(records()).save_to_disk(saved)
        shutil.copy(Path(saved) / "data-00000-of-00001.arrow", files / "datasets_writer.arrow")

    unread, skipped = unread_types_table()
    write_stream(files / "unread_types.arrow", unread)

    expected = {"files": {}, "unread_columns": {}}
    for path in sorted(files.glob("*.arrow")):
        read = read_arrow(path)
        if path.stem == "unread_types":
            kept = ["text", "nested", "nothing"]
            expected["unread_columns"] = {f.name: str(f.type) for f in read.schema if f.name not in kept}
            read = read.select(kept)
        expected["files"][path.stem] = to_json(read.to_pylist())


    write_layouts(out / "layouts", table)
    expected["layouts"] = load_layouts(out / "layouts")
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1))
    for name, why in skipped.items():
        print(f"unread_types: skipped {name}: {why}")


if __name__ == "__main__":
    main()
