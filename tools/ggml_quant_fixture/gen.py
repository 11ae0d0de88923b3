#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The autotrain authors
"""Input generator and meta.json writer for the ggml quantizer fixture (see make.sh, README.md).

  gen.py input OUT_DIR            writes OUT_DIR/input.f32 (ROWS x COLS little-endian float32, row-major)
  gen.py importance OUT_DIR       writes OUT_DIR/importance.f32 (ROWS x COLS float32: row r is the importance
                                  matrix entry, one weight a column, that row r of input.f32 is quantized with)
  gen.py meta OUT_DIR KEY=VALUE.. writes OUT_DIR/meta.json (row kinds, types, sizes, sha256 of every file)

The input is deterministic (numpy Generator(PCG64) with a fixed seed, one child stream per row). Each row
is built to hit one hard case of the block quantizers; ROW_KINDS names them and goes into meta.json.
Blocks are 32 wide (q4_0 ... q8_0), K-quant super-blocks 256 wide with 32 (q4_K, q5_K) or 16 (q2_K, q3_K, q6_K) wide
sub-blocks, so a 512-wide row is 16 blocks / 2 super-blocks.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROWS, COLS = 43, 512
SEED = 20260821
TYPES = [  # name, weights per block, bytes per block (GGUF format, checked against sizeof(block_*) by the oracle)
    ("q4_0", 32, 18), ("q4_1", 32, 20), ("q5_0", 32, 22), ("q5_1", 32, 24), ("q8_0", 32, 34),
    ("q2_K", 256, 84), ("q3_K", 256, 110), ("q4_K", 256, 144), ("q5_K", 256, 176), ("q6_K", 256, 210),
    ("iq4_nl", 32, 18), ("iq4_xs", 256, 136),
]
IQ_TYPES = ("iq4_nl", "iq4_xs")  # quantized by quantize_<type>(row, out, 1, cols, NULL), as llama-quantize does


def blocks_of(n):
    return COLS // n


def row_ties_signed(rng, levels):
    """Per 32-block: one element -levels*2^e (so d = max/-levels = 2^e exactly, id = 2^-e) and the rest
    (k + 0.5) * 2^e, so x*id + levels + 0.5 lands exactly on an integer: the rounding-tie case of q4_0
    (levels 8) / q5_0 (levels 16); for q8_0-style use levels 127 with amax = 127*2^e."""
    out = []
    for b in range(blocks_of(32)):
        e = b - 8  # powers of two 2^-8 .. 2^7
        k = rng.integers(-levels, levels, size=32)
        v = (k + 0.5) * 2.0**e
        v[rng.integers(0, 32)] = -levels * 2.0**e
        out.append(v)
    return np.concatenate(out)


def row_ties_q8(rng):
    out = []
    for b in range(blocks_of(32)):
        e = b - 10
        k = rng.integers(-127, 127, size=32)
        v = (k + 0.5) * 2.0**e
        v[rng.integers(0, 32)] = (1 if b % 2 else -1) * 127 * 2.0**e
        out.append(v)
    return np.concatenate(out)


def row_ties_minmax(rng, steps):
    """Per 32-block: min m, max m + steps*2^e (so d = (max-min)/steps = 2^e exactly) and the rest
    m + (k + 0.5) * 2^e: the tie case of q4_1 (steps 15) / q5_1 (steps 31)."""
    out = []
    for b in range(blocks_of(32)):
        e = b - 9
        m = rng.integers(-40, 10) * 2.0**e
        v = m + (rng.integers(0, steps, size=32) + 0.5) * 2.0**e
        i, j = rng.choice(32, size=2, replace=False)
        v[i], v[j] = m, m + steps * 2.0**e
        out.append(v)
    return np.concatenate(out)


def row_k_final_ties(rng, kind):
    """Exact rounding ties in the last pass of a K-quant of 16-value sub-blocks, which codes each value against its
    sub-block's scale as stored, d_j = fp16(d) * sc_j. Per 256-value super-block, one anchor sub-block holds c * L
    for integers L (c a power of two): its fitted scale is exactly c, the largest, so d is exact (c / 32 for q3_K,
    c / 128 for q6_K; q2_K's fp16(c / 15) has few bits). The other 15 hold (k + 0.5) * D with D = d * 1: their
    fitted scales are within half a step of D, so sc_j = 1 (in magnitude) and every x / d_j is k + 0.5 exactly,
    where ggml's nearest_int rounds to even. kind: "q2_K" (codes 0..3, non-negative values, no min), "q3_K"
    (-4..3), "q6_K" (-32..31)."""
    low, high = {"q2_K": (0, 3), "q3_K": (-4, 3), "q6_K": (-32, 31)}[kind]
    out = []
    for block, e in enumerate((-3, 2)):
        c = 2.0 ** e
        d = {"q2_K": float((np.float32(c) / np.float32(15)).astype(np.float16)), "q3_K": c / 32, "q6_K": c / 128}[kind]
        anchor = rng.integers(0, 16)
        for j in range(16):
            if j == anchor:
                v = c * rng.integers(low, high + 1, size=16).astype(np.float64)
                # q2_K: min 0 and max 3c fix the fit's range; the others: -|low| c is the largest magnitude
                v[:2] = c * low, c * high
            else:
                v = (rng.integers(low, high + 1, size=16) + 0.5) * d
                if kind != "q2_K":
                    v[0] = (low + 0.5) * d  # the negative end, so that the fitted scale is positive
            rng.shuffle(v)
            out.append(v)
    return np.concatenate(out)


def row_subblock_scales(rng, width):
    x = rng.standard_normal(COLS)
    return x * np.repeat(10.0 ** rng.uniform(-4, 2, size=COLS // width), width)


def row_single_nonzero(rng, at_start_negative):
    x = np.zeros(COLS)
    for b in range(blocks_of(32)):
        if at_start_negative:
            x[32 * b] = -abs(rng.standard_normal()) - 0.1
        else:
            x[32 * b + rng.integers(0, 32)] = rng.standard_normal() * 10.0 ** rng.uniform(-2, 1)
    return x


def row_constant_blocks(rng):
    c = rng.standard_normal(blocks_of(32)) * 2.0
    c[3] = 0.0
    c[7] = 1e-3
    return np.repeat(c, 32)


def with_outliers(rng, x, n):
    x = x.copy()
    # one outlier on the row's first element, one on its last, the rest anywhere in between
    idx = np.concatenate([[0, COLS - 1], 1 + rng.choice(COLS - 2, size=n - 2, replace=False)])
    x[idx] *= 100.0
    return x


ROW_KINDS = [
    ("llm_weights N(0,0.02)", lambda r: r.normal(0, 0.02, COLS)),
    ("llm_weights N(0,0.02) #2", lambda r: r.normal(0, 0.02, COLS)),
    ("N(0,1)", lambda r: r.standard_normal(COLS)),
    ("N(0,1) #2", lambda r: r.standard_normal(COLS)),
    ("N(0,0.02) with 6 outliers x100", lambda r: with_outliers(r, r.normal(0, 0.02, COLS), 6)),
    ("N(0,1) with 3 outliers x100", lambda r: with_outliers(r, r.standard_normal(COLS), 3)),
    ("all zeros", lambda r: np.zeros(COLS)),
    ("constant positive 0.75", lambda r: np.full(COLS, 0.75)),
    ("constant negative -1.25", lambda r: np.full(COLS, -1.25)),
    ("all negative -(|N(0,1)|+U(0,0.5))", lambda r: -(np.abs(r.standard_normal(COLS)) + r.uniform(0, 0.5, COLS))),
    ("all positive U(0.5,1.5)", lambda r: r.uniform(0.5, 1.5, COLS)),
    ("all positive |N(0,0.02)|", lambda r: np.abs(r.normal(0, 0.02, COLS))),
    ("tiny N(0,1)*1e-7 (fp16 scales underflow to 0 / subnormal)", lambda r: r.standard_normal(COLS) * 1e-7),
    ("small N(0,1)*1e-5 (fp16 scales subnormal)", lambda r: r.standard_normal(COLS) * 1e-5),
    ("small N(0,1)*1e-3 (K-quant fp16 scales subnormal)", lambda r: r.standard_normal(COLS) * 1e-3),
    ("huge N(0,1)*1e4", lambda r: r.standard_normal(COLS) * 1e4),
    ("huge U(-6e4,6e4) (near fp16 max 65504)", lambda r: r.uniform(-6e4, 6e4, COLS)),
    ("sub-block scales 10^U(-4,2) per 32", lambda r: row_subblock_scales(r, 32)),
    ("sub-block scales 10^U(-4,2) per 32 #2", lambda r: row_subblock_scales(r, 32)),
    ("sub-block scales 10^U(-4,2) per 16", lambda r: row_subblock_scales(r, 16)),
    ("alternating +0.3/-0.3", lambda r: np.tile([0.3, -0.3], COLS // 2)),
    ("alternating -1.7/+1.7", lambda r: np.tile([-1.7, 1.7], COLS // 2)),
    ("ties q4_0: max -8*2^e, rest (k+0.5)*2^e", lambda r: row_ties_signed(r, 8)),
    ("ties q5_0: max -16*2^e, rest (k+0.5)*2^e", lambda r: row_ties_signed(r, 16)),
    ("ties q8_0: amax 127*2^e, rest (k+0.5)*2^e", row_ties_q8),
    ("ties q4_1: range 15*2^e, rest min+(k+0.5)*2^e", lambda r: row_ties_minmax(r, 15)),
    ("ties q5_1: range 31*2^e, rest min+(k+0.5)*2^e", lambda r: row_ties_minmax(r, 31)),
    ("half-integer grid (k+0.5)*2^-4, k in [-64,63]", lambda r: (r.integers(-64, 64, COLS) + 0.5) / 16.0),
    ("zeros with one nonzero per 32-block", lambda r: row_single_nonzero(r, False)),
    ("zeros with one negative nonzero first in each 32-block", lambda r: row_single_nonzero(r, True)),
    ("constant within each 32-block (min == max)", row_constant_blocks),
    ("random N(0,0.05)", lambda r: r.normal(0, 0.05, COLS)),
    ("random N(0,0.006)", lambda r: r.normal(0, 0.006, COLS)),
    ("random Laplace(0,0.02)", lambda r: r.laplace(0, 0.02, COLS)),
    ("random Student-t(3)*0.01", lambda r: r.standard_t(3, COLS) * 0.01),
    ("random U(-1,1)", lambda r: r.uniform(-1, 1, COLS)),
    ("random N(0.5,0.1) (offset)", lambda r: r.normal(0.5, 0.1, COLS)),
    ("random N(-3,1) (offset)", lambda r: r.normal(-3, 1, COLS)),
    ("random N(0,1)*U(0,1)^4 per element", lambda r: r.standard_normal(COLS) * r.uniform(0, 1, COLS) ** 4),
    ("random N(0,0.02) #3", lambda r: r.normal(0, 0.02, COLS)),
    ("ties q2_K final pass: (k+0.5)*fp16(c/15) beside an anchor sub-block c*L", lambda r: row_k_final_ties(r, "q2_K")),
    ("ties q3_K final pass: (k+0.5)*c/32 beside an anchor sub-block c*L", lambda r: row_k_final_ties(r, "q3_K")),
    ("ties q6_K final pass: (k+0.5)*c/128 beside an anchor sub-block c*L", lambda r: row_k_final_ties(r, "q6_K")),
]
assert len(ROW_KINDS) == ROWS, len(ROW_KINDS)


def lognormal(rng, sigma):
    return rng.lognormal(0.0, sigma, COLS)


def outlier_columns(rng):
    v = lognormal(rng, 3.0)
    v[rng.choice(COLS, COLS // 100, replace=False)] *= 1e4
    return v


def with_zeros(rng):
    v = rng.uniform(0, 1, COLS)
    v[rng.random(COLS) < 0.25] = 0.0
    return v


def zero_blocks(rng):
    v = lognormal(rng, 1.5)
    v[64:96] = 0.0    # a whole 32-block (q4_0 ... q5_1; a q4_K / q5_K sub-block)
    v[288:304] = 0.0  # a 16-value sub-block of q2_K / q3_K / q6_K
    return v


# Importance matrices hold the mean square of each column's input activations: positive, spread over orders of
# magnitude, a few outlier features far above the rest, zeros where a column never fired. Row r of input.f32 is
# quantized with kind r % 8 (its own stream, so input.f32 stays as it was).
IMPORTANCE_KINDS = [
    ("lognormal(0, 1.5)", lambda r: lognormal(r, 1.5)),
    ("lognormal(0, 3) with 1% of columns x1e4", outlier_columns),
    ("all ones", lambda r: np.ones(COLS)),
    ("U(0,1) with 25% exact zeros", with_zeros),
    ("lognormal(0, 1.5) with a zero 32-block and a zero 16-block", zero_blocks),
    ("lognormal(0, 1.5) x 1e-12", lambda r: lognormal(r, 1.5) * 1e-12),
    ("lognormal(0, 1.5) x 1e6", lambda r: lognormal(r, 1.5) * 1e6),
    ("one lognormal(0, 2) value per 16 columns", lambda r: np.repeat(r.lognormal(0.0, 2.0, COLS // 16), 16)),
]


def make_importance():
    streams = np.random.default_rng(SEED + 1).spawn(ROWS)
    q = np.stack([np.asarray(IMPORTANCE_KINDS[i % len(IMPORTANCE_KINDS)][1](rng), dtype=np.float64)
                  for i, rng in enumerate(streams)]).astype(np.float32)
    assert q.shape == (ROWS, COLS) and np.isfinite(q).all() and (q >= 0).all()
    return q


def make_input():
    streams = np.random.default_rng(SEED).spawn(ROWS)
    x = np.stack([np.asarray(fn(rng), dtype=np.float64) for (_, fn), rng in zip(ROW_KINDS, streams)])
    x = x.astype(np.float32)
    assert x.shape == (ROWS, COLS) and np.isfinite(x).all() and np.abs(x).max() < 65504
    return x


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv):
    if len(argv) < 2 or argv[0] not in ("input", "importance", "meta"):
        sys.exit(__doc__)
    out = Path(argv[1])
    if argv[0] in ("input", "importance"):
        out.mkdir(parents=True, exist_ok=True)
        values = make_input() if argv[0] == "input" else make_importance()
        values.astype("<f4").tofile(out / f"{argv[0]}.f32")
        return
    extra = dict(kv.split("=", 1) for kv in argv[2:])
    meta = {
        "description": "llama.cpp/ggml reference quantizer output (quantize_row_<type>_ref), used as a test oracle",
        "input": "input.f32",
        "input_format": "little-endian float32, row-major",
        "rows": ROWS,
        "cols": COLS,
        "seed": SEED,
        "numpy_version": np.__version__,
        "row_kinds": [name for name, _ in ROW_KINDS],
        "importance": "importance.f32",
        "importance_kinds": [IMPORTANCE_KINDS[r % len(IMPORTANCE_KINDS)][0] for r in range(ROWS)],
        "types": [
            {
                "name": name,
                "file": f"{name}.bin",
                "block_size": bs,
                "bytes_per_block": bpb,
                "blocks_per_row": COLS // bs,
                "bytes_per_row": COLS // bs * bpb,
                "function": (f"quantize_{name}(row, out, 1, cols, NULL)" if name in IQ_TYPES
                             else f"quantize_row_{name}_ref"),
                "imatrix_file": f"{name}.imatrix.bin",
                "imatrix_function": f"quantize_{name}(row, out, 1, cols, importance row)",
            }
            for name, bs, bpb in TYPES
        ],
        **extra,
        "sha256": {p.name: sha256(p) for p in sorted(out.iterdir()) if p.suffix in (".f32", ".bin")},
    }
    for t in meta["types"]:
        size = (out / t["file"]).stat().st_size
        assert size == ROWS * t["bytes_per_row"], (t["file"], size)
        size = (out / t["imatrix_file"]).stat().st_size
        assert size == ROWS * t["bytes_per_row"], (t["imatrix_file"], size)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
