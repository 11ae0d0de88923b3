#!/usr/bin/env python3
"""Oracle for the LZ4 decoders (src/parquet_codecs.cpp): inputs compressed by pyarrow's LZ4 codecs (Arrow C++ over
liblz4), as raw blocks ("lz4_raw", Parquet's LZ4_RAW pages) and frames ("lz4", Arrow's LZ4_FRAME buffers).
Inputs: text with long repeats (match lengths past 255), incompressible bytes (literal runs past 255, frames with
blocks stored uncompressed), 300 kB of mixed text (a frame of several linked blocks whose matches reach into the
block before), one byte, and two halves compressed apart (Hadoop's framing of two chunks, built by the test).
Writes reference/lz4/<case>.plain, .raw and .frame (two_chunks: .plain, .chunk0, .chunk1) and cases.json, the
cases' names and the chunks' uncompressed sizes."""
import argparse
import json
import random
from pathlib import Path

import pyarrow as pa


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "lz4"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    words = ["the", "model", "adapter", "token", "layer", "données", "模型", "weight", "learning", "rate"]
    mixed = " ".join(rng.choice(words) + str(rng.randrange(100)) for _ in range(45000)).encode()[:300000]
    inputs = {
        "long_repeats": ("abc" * 2000 + "x" + "abc" * 700).encode(),
        "incompressible": bytes(rng.randrange(256) for _ in range(70000)),
        "mixed_300k": mixed,
        "one_byte": b"z",
    }
    cases = []
    for name, plain in inputs.items():
        (out / f"{name}.plain").write_bytes(plain)
        (out / f"{name}.raw").write_bytes(pa.compress(plain, codec="lz4_raw", asbytes=True))
        (out / f"{name}.frame").write_bytes(pa.compress(plain, codec="lz4", asbytes=True))
        cases.append(name)
    (out / "two_chunks.plain").write_bytes(mixed[:20000])
    for i, chunk in enumerate([mixed[:10000], mixed[10000:20000]]):
        (out / f"two_chunks.chunk{i}").write_bytes(pa.compress(chunk, codec="lz4_raw", asbytes=True))
    (out / "cases.json").write_text(json.dumps({"cases": cases, "two_chunks": [10000, 10000]}))


if __name__ == "__main__":
    main()
