#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The autotrain authors
"""compare.py FILE.gguf OUTDIR: what ggml's own reader saw in FILE (read.c's OUTDIR/index.json and <i>.f32) against
what the `gguf` package (gguf-py) reads: the same metadata keys with the same GGUF types (and array lengths), the same
tensors in the same order with the same ggml type, shape, offset and size, and each tensor's values as ggml
dequantizes them equal bit for bit to gguf-py's dequantization. Exits non-zero, printing what differs."""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

GGML_NAMES = {"STRING": "str", "UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
              "INT32": "i32", "FLOAT32": "f32", "UINT64": "u64", "INT64": "i64", "FLOAT64": "f64", "BOOL": "bool",
              "ARRAY": "arr"}


def main(gguf_file, out_dir):
    ggml = json.loads((Path(out_dir) / "index.json").read_text())
    reader = GGUFReader(gguf_file)
    errors = []
    keys = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue  # gguf-py's own entries for the header
        kind = GGML_NAMES[field.types[0].name]
        entry = [field.name, kind]
        if field.types[0] == GGUFValueType.ARRAY:
            entry += [GGML_NAMES[field.types[-1].name], len(field.data)]
        keys.append(entry)
    if keys != ggml["keys"]:
        errors.append(f"metadata differs: gguf-py {keys[:3]}... ggml {ggml['keys'][:3]}...")
    if len(reader.tensors) != len(ggml["tensors"]):
        errors.append(f"{len(reader.tensors)} tensors by gguf-py, {len(ggml['tensors'])} by ggml")
    for i, (tensor, seen) in enumerate(zip(reader.tensors, ggml["tensors"])):
        ne = [int(d) for d in tensor.shape] + [1] * (4 - len(tensor.shape))
        if (tensor.name, tensor.tensor_type.name.lower(), ne) != (seen["name"], seen["type"].lower(), seen["ne"]):
            errors.append(f"tensor {i}: gguf-py {tensor.name} {tensor.tensor_type.name} {ne}, ggml {seen}")
            continue
        if tensor.data_offset - reader.data_offset != seen["offset"] or tensor.n_bytes != seen["size"]:
            errors.append(f"{tensor.name}: offset / size {tensor.data_offset - reader.data_offset} / {tensor.n_bytes}, "
                          f"ggml {seen['offset']} / {seen['size']}")
        theirs = np.fromfile(Path(out_dir) / f"{i}.f32", dtype="<f4")
        ours = np.asarray(dequantize(np.asarray(tensor.data), tensor.tensor_type), dtype=np.float32).reshape(-1)
        if theirs.shape != ours.shape or not np.array_equal(theirs.view(np.uint32), ours.view(np.uint32)):
            errors.append(f"{tensor.name}: ggml's {seen['type']} values differ from gguf-py's")
    if ggml["version"] != 3 or ggml["alignment"] != 32:
        errors.append(f"version {ggml['version']}, alignment {ggml['alignment']}")
    for error in errors:
        print("MISMATCH", error)
    types = sorted({t["type"] for t in ggml["tensors"]})
    print(f"{gguf_file}: ggml read {len(ggml['keys'])} keys, {len(ggml['tensors'])} tensors ({', '.join(types)}); "
          f"{len(errors)} mismatches")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
