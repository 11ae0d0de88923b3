#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The autotrain authors
"""Cross-checks the ggml quantizer fixture against the independent `gguf` PyPI package (gguf-py).

  check.py [DIR]        DIR defaults to tests/data/ggml_quants

1. q4_0 q4_1 q5_0 q5_1 q8_0: gguf.quants.quantize(input, type) must give ggml's bytes exactly
   (gguf-py has no quantizer for the K-quants).
2. All 12 types: gguf.quants.dequantize(ggml's bytes) must be finite; prints the relative RMSE
   ||deq - x|| / ||x|| per type: the worst over the rows whose fp16 scales are representable, and
   separately the rows built to underflow fp16 (tiny/small rows), where large errors are expected.
   If DIR holds <type>.deq.f32 (oracle --dequant), gguf's dequantization must equal ggml's bit for bit.
3. meta.json's sha256 entries must match the files.

Exit status 1 on any failure. Needs numpy and gguf (tools/requirements.txt / .venv).
"""
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent.parent
QUANTIZE_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
# rows whose quantization scales fall below fp16's normal range by construction (see gen.py)
UNDERFLOW_MARK = ("tiny ", "small ")
# loose sanity bounds on the worst relative RMSE of the other rows (a broken fixture is far off these)
BOUND = {"q4_0": 0.5, "q4_1": 0.5, "q5_0": 0.5, "q5_1": 0.5, "q8_0": 0.1, "q2_K": 0.8, "q3_K": 0.6, "q4_K": 0.5, "q5_K": 0.5, "q6_K": 0.5,
         "iq4_nl": 0.5, "iq4_xs": 0.5}


def qtype(name):
    return T[name.upper()]


def main(argv):
    d = Path(argv[0]) if argv else ROOT / "tests" / "data" / "ggml_quants"
    meta = json.loads((d / "meta.json").read_text())
    rows, cols = meta["rows"], meta["cols"]
    x = np.fromfile(d / "input.f32", dtype="<f4")
    assert x.size == rows * cols, "input.f32 size"
    x = x.reshape(rows, cols)
    kinds = meta["row_kinds"]
    underflow = np.array([k.startswith(UNDERFLOW_MARK) for k in kinds])
    failures = []

    for name, digest in meta["sha256"].items():
        if hashlib.sha256((d / name).read_bytes()).hexdigest() != digest:
            failures.append(f"sha256 of {name} differs from meta.json")

    print(f"fixture {d}: {rows} x {cols}, ggml {meta.get('ggml_commit', '?')}, "
          f"gguf-py {metadata.version('gguf')}, numpy {np.__version__}")
    print("\n1. gguf.quants.quantize vs ggml quantize_row_*_ref (byte-exact)")
    for t in meta["types"]:
        name = t["name"]
        if name not in QUANTIZE_TYPES:
            continue
        ref = np.fromfile(d / t["file"], dtype=np.uint8).reshape(rows, t["bytes_per_row"])
        got = quants.quantize(x, qtype(name))
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        if np.array_equal(got, ref):
            print(f"  {name}: identical ({ref.size} bytes, {rows * t['blocks_per_row']} blocks)")
            continue
        bpb = t["bytes_per_block"]
        bad = np.argwhere((got != ref).reshape(rows, -1, bpb).any(axis=-1))
        failures.append(f"{name}: {len(bad)} blocks differ from gguf-py")
        print(f"  {name}: MISMATCH in {len(bad)} of {rows * t['blocks_per_row']} blocks")
        for r, b in bad[:8]:
            g = got[r, b * bpb:(b + 1) * bpb]
            e = ref[r, b * bpb:(b + 1) * bpb]
            print(f"    row {r} ({kinds[r]}) block {b}: bytes {np.flatnonzero(g != e).tolist()}\n"
                  f"      ggml {e.tobytes().hex()}\n      gguf {g.tobytes().hex()}")

    print("\n2. gguf.quants.dequantize(ggml bytes): finite, relative RMSE per row")
    print(f"  {'type':5} {'worst (regular rows)':>22}  {'median':>9}  underflow rows (" +
          ", ".join(str(i) for i in np.flatnonzero(underflow)) + ")")
    for t in meta["types"]:
        name = t["name"]
        ref = np.fromfile(d / t["file"], dtype=np.uint8).reshape(rows, t["bytes_per_row"])
        y = quants.dequantize(ref, qtype(name))
        assert y.shape == x.shape, (name, y.shape)
        if not np.isfinite(y).all():
            failures.append(f"{name}: dequantization is not finite")
        deq_file = d / f"{name}.deq.f32"
        if deq_file.exists():
            ggml_y = np.fromfile(deq_file, dtype="<f4").reshape(rows, cols)
            if not np.array_equal(ggml_y.view(np.uint32), y.astype(np.float32).view(np.uint32)):
                failures.append(f"{name}: gguf-py dequantization differs from ggml's dequantize_row_{name}")
        err = np.sqrt(((y.astype(np.float64) - x) ** 2).sum(axis=1))
        norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1))
        zero = norm == 0
        if (err[zero] != 0).any():
            failures.append(f"{name}: an all-zero row does not dequantize to zeros")
        rel = np.where(zero, 0.0, err / np.where(zero, 1.0, norm))
        regular = ~underflow & ~zero
        worst = int(np.flatnonzero(regular)[np.argmax(rel[regular])])
        if rel[worst] > BOUND[name]:
            failures.append(f"{name}: relative RMSE {rel[worst]:.4g} on row {worst} exceeds {BOUND[name]}")
        uf = " ".join(f"{rel[i]:.3g}" for i in np.flatnonzero(underflow))
        print(f"  {name:5} {rel[worst]:10.4g} (row {worst:2d})  {np.median(rel[regular]):9.4g}  {uf}")
        if deq_file.exists():
            print(f"        (bit-identical to ggml's dequantize_row_{name}: "
                  f"{'yes' if not any(f.startswith(name + ': gguf-py deq') for f in failures) else 'NO'})")

    if "importance" in meta:
        print("\n3. with the importance matrix (quantize_<type>(..., importance row)): the error weighted by the")
        print("   importance, sum(qw * (deq - x)^2) / sum(qw * x^2), median over the regular rows with and without it")
        qw = np.fromfile(d / meta["importance"], dtype="<f4").reshape(rows, cols).astype(np.float64)
        for t in meta["types"]:
            name = t["name"]
            errors = []
            for key in ("file", "imatrix_file"):
                raw = np.fromfile(d / t[key], dtype=np.uint8).reshape(rows, t["bytes_per_row"])
                y = quants.dequantize(raw, qtype(name)).astype(np.float64)
                if not np.isfinite(y).all():
                    failures.append(f"{t[key]}: dequantization is not finite")
                num = (qw * (y - x) ** 2).sum(axis=1)
                den = (qw * x.astype(np.float64) ** 2).sum(axis=1)
                ok = ~underflow & (den > 0)
                errors.append(np.median(num[ok] / den[ok]))
            plain, weighted = errors
            # q8_0 ignores the weights; for the others the weighted fit must not be worse on the weighted error
            if name != "q8_0" and weighted > plain:
                failures.append(f"{name}: the importance matrix raised the weighted error ({plain:.4g} -> {weighted:.4g})")
            print(f"  {name:5} {plain:10.4g} -> {weighted:10.4g}  ({weighted / plain:.3f}x)")

    print()
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
