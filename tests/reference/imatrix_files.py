#!/usr/bin/env python3
"""Importance-matrix files as llama.cpp's llama-imatrix writes them (tools/imatrix/imatrix.cpp save_imatrix /
save_imatrix_legacy), for a model folder's 2-D weights by their GGUF names, and their values as llama-quantize reads
them (common/imatrix-loader.cpp + tools/quantize/quantize.cpp load_imatrix): the oracle of src/imatrix.cpp and of
export-gguf --imatrix.

  imatrix_files.py --model DIR --out FILE [--format gguf|dat] [--seed N] [--skip NAME]... [--wrong-size NAME]
                   [--nan NAME] [--no-counts NAME] [--expected FILE.json]

GGUF format (gguf-py's GGUFWriter, llama.cpp's package): general.type "imatrix", imatrix.datasets,
imatrix.chunk_count, imatrix.chunk_size; per weight W "W.in_sum2" (F32, ggml shape (columns, 1): the sums of x^2)
and "W.counts" (F32, (1, 1): the tokens summed). Legacy .dat: int32 entries; per entry int32 name length, name,
int32 ncall, int32 values, float32 (mean x ncall); int32 chunk count, int32 length, dataset name.
The values are lognormal(0, 1.5) means per column (activations' mean squares spread over orders of magnitude), a
few columns x1e3 (outlier features). --expected writes {name: [value, ...]} as llama-quantize computes them
(float32 sums / count, or stored / ncall).
"""
import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOKENS = 4096  # tokens the sums run over (8 chunks of 512, llama-imatrix's default context)
CHUNKS, CHUNK_SIZE = 8, 512
DATASET = "calibration.txt"


def weight_columns(model_dir):
    """{GGUF name: columns} of the model folder's 2-D weights (export-gguf's names)."""
    from gguf_check import gguf_names, load_source
    config = json.loads((Path(model_dir) / "config.json").read_text())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    names = gguf_names(config, arch)
    return {names[name]: int(t.shape[-1]) for name, t in load_source(Path(model_dir)).items()
            if t.dim() == 2 and name in names}


def make_means(columns, seed):
    rng = np.random.default_rng(seed)
    means = {}
    for name in sorted(columns):
        if name == "token_embd.weight":  # a row lookup, not a product: llama-imatrix never sees it
            continue
        v = rng.lognormal(0.0, 1.5, columns[name])
        v[rng.choice(columns[name], max(1, columns[name] // 100), replace=False)] *= 1e3
        means[name] = v.astype(np.float32)
    return means


def write_gguf(path, means, no_counts=()):
    import gguf
    writer = gguf.GGUFWriter(str(path), arch="imatrix")  # the reader skips general.architecture
    writer.add_string("general.type", "imatrix")
    writer.add_array("imatrix.datasets", [DATASET])
    writer.add_uint32("imatrix.chunk_count", CHUNKS)
    writer.add_uint32("imatrix.chunk_size", CHUNK_SIZE)
    expected = {}
    for name, mean in means.items():
        sums = (mean.astype(np.float64) * TOKENS).astype(np.float32)
        counts = np.full((1, 1), TOKENS, dtype=np.float32)
        writer.add_tensor(f"{name}.in_sum2", sums.reshape(1, -1))
        if name not in no_counts:
            writer.add_tensor(f"{name}.counts", counts)
        expected[name] = (sums / np.float32(TOKENS)).astype(np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def write_dat(path, means, ncall=CHUNKS):
    expected = {}
    out = bytearray(struct.pack("<i", len(means)))
    for name, mean in means.items():
        stored = (mean * np.float32(ncall)).astype(np.float32)  # (sum / count) * ncall
        raw = name.encode()
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, stored.size) + stored.astype("<f4").tobytes()
        expected[name] = (stored / np.float32(ncall)).astype(np.float32) if ncall > 0 else stored
    out += struct.pack("<i", CHUNKS) + struct.pack("<i", len(DATASET)) + DATASET.encode()
    Path(path).write_bytes(bytes(out))
    return expected


def read_values(path):
    """{name: values} as llama-quantize computes them from either format, and (datasets, chunk count)."""
    data = Path(path).read_bytes()
    if data[:4] == b"GGUF":
        import gguf
        reader = gguf.GGUFReader(str(path))
        tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
        values = {}
        for name, sums in tensors.items():
            if not name.endswith(".in_sum2"):
                continue
            weight = name[: -len(".in_sum2")]
            counts = np.rint(tensors[weight + ".counts"]).astype(np.float32)
            per = sums.size // counts.size
            values[weight] = np.concatenate([sums[j * per:(j + 1) * per] / c if c > 0 else np.ones(per, np.float32)
                                             for j, c in enumerate(counts)]).astype(np.float32)
        field = lambda key: reader.fields[key].contents() if key in reader.fields else None  # noqa: E731
        return values, list(field("imatrix.datasets") or []), int(field("imatrix.chunk_count") or 0)
    pos, values = 4, {}
    for _ in range(struct.unpack_from("<i", data, 0)[0]):
        (length,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4:pos + 4 + length].decode()
        pos += 4 + length
        ncall, n = struct.unpack_from("<ii", data, pos)
        stored = np.frombuffer(data, dtype="<f4", count=n, offset=pos + 8).astype(np.float32)
        pos += 8 + 4 * n
        values[name] = stored / np.float32(ncall) if ncall > 0 else stored
    chunks, datasets = 0, []
    if pos < len(data):
        (chunks,) = struct.unpack_from("<i", data, pos)
        (length,) = struct.unpack_from("<i", data, pos + 4)
        datasets = [data[pos + 8:pos + 8 + length].decode()] if length > 0 else []
    return values, datasets, chunks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", help="(make_fixtures.py runs every oracle so: nothing to make ahead here)")
    parser.add_argument("--model")
    parser.add_argument("--out")
    parser.add_argument("--format", choices=["gguf", "dat"], default="gguf")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", action="append", default=[], help="leave this weight out")
    parser.add_argument("--wrong-size", action="append", default=[], help="give this weight one value too many")
    parser.add_argument("--nan", action="append", default=[], help="put a NaN into this weight's values")
    parser.add_argument("--no-counts", action="append", default=[], help="GGUF: leave out this weight's counts")
    parser.add_argument("--expected")
    args = parser.parse_args()
    if args.fixtures and not args.model:
        return  # the tests write their matrices when they need them
    if not args.model or not args.out:
        parser.error("give --model DIR and --out FILE")
    means = make_means(weight_columns(args.model), args.seed)
    for name in args.skip:
        means.pop(name)
    for name in args.wrong_size:
        means[name] = np.append(means[name], np.float32(1.0))
    for name in args.nan:
        means[name][0] = np.nan
    if args.format == "gguf":
        expected = write_gguf(args.out, means, args.no_counts)
    else:
        expected = write_dat(args.out, means)
    if args.expected:
        Path(args.expected).write_text(json.dumps({
            "values": {name: [float(v) for v in values] for name, values in expected.items()},
            "datasets": [DATASET], "chunk_count": CHUNKS}))


if __name__ == "__main__":
    main()
