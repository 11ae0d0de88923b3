#!/usr/bin/env python3
"""Oracle for src/ggml_quants.cpp's dequantization: gguf-py's (llama.cpp's gguf PyPI package) dequantize of the
bytes ggml's reference quantizers wrote into tests/data/ggml_quants/ (see its SOURCES.md).

  ggml_quants.py --fixtures DIR     writes DIR/reference/ggml_quants/<type>.f32 (rows x cols float32)
"""
import argparse
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "data" / "ggml_quants"


def main():
    import gguf
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    args = parser.parse_args()
    out = Path(args.fixtures) / "reference" / "ggml_quants"
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((DATA / "meta.json").read_text())
    for entry in meta["types"]:
        raw = np.fromfile(DATA / entry["file"], dtype=np.uint8).reshape(meta["rows"], -1)
        qtype = getattr(gguf.GGMLQuantizationType, entry["name"].upper())
        values = gguf.quants.dequantize(raw, qtype).astype("<f4")
        assert values.shape == (meta["rows"], meta["cols"]), values.shape
        values.tofile(out / f"{entry['name']}.f32")


if __name__ == "__main__":
    main()
