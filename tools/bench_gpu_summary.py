#!/usr/bin/env python3
"""The experiments of tools/bench_gpu side by side, from the JSON lines of its output (bench_gpu.txt).

    python3 tools/bench_gpu_summary.py /tmp/gpu-check/bench_gpu.txt

For the GEMV on each layout (rows; the gemv_tiles layout at each depth, with the automatic blocks and with blocks of
16 warps; generation's default is tiled and grouped since the seventeenth session), the dequantization launched
overlapping the GEMM before it and the fused matmul's Hopper tiling (wgmma), the figure beside the default's, so
that a session with a GPU can see which to turn on without reading every table. Only what bench_gpu measured in
that run is compared: nothing here is a stored figure.
"""
import json
import sys


def records(path):
    """The JSON lines of a bench_gpu output, and the numbers of the broken ones (e.g. the last, cut short when
    bench_gpu was stopped by its timeout). A one-line error (exit 1) for a file that cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        sys.exit(f"bench_gpu_summary: cannot read {path}: {e.strerror}")
    found, broken = [], []
    for number, line in enumerate(lines, 1):
        if line.startswith("JSON "):
            try:
                found.append(json.loads(line[5:]))
            except json.JSONDecodeError:
                broken.append(number)
    return found, broken


def best(record, prefix, depths=range(1, 5)):
    """The fastest depth of the fields prefix + 'depth<d>_us', as (us, depth), or None."""
    found = [(record[f"{prefix}depth{d}_us"], d) for d in depths if f"{prefix}depth{d}_us" in record]
    found = [(us, d) for us, d in found if us > 0]
    return min(found) if found else None


def main(path):
    rows, broken = records(path)
    if not rows:
        sys.exit(f"bench_gpu_summary: no JSON lines in {path}" + (f" (broken: line {broken[0]})" if broken else ""))
    gemv = [r for r in rows if r["bench"] == "gemv"]
    if gemv:
        print("GEMV, us (% of peak); rows: the rows layout launched overlapping (a 4-bit weight outside generation); "
              "tiles: generation's layout")
        print("| shape | m | rows | rows, fastest of depths and warps (one at a time) | tiles, automatic blocks | "
              "tiles, 16 warps | tiles, automatic depth and blocks (generation's) |")
        print("|---|---|---|---|---|---|---|")
        for r in gemv:
            # bytes / peak from the plain call's figures: gbs = bytes / us, peak_fraction = gbs / peak.
            peak_us = r["us"] * r["peak_fraction"]  # the time at the peak bandwidth

            def cell(us, note=""):
                return f"{us:.1f} ({100 * peak_us / us:.0f}%){note}" if us and us > 0 else "-"

            def fastest(prefix):
                found = best(r, prefix)
                return cell(found[0], f" at depth {found[1]}") if found else "-"

            print(f"| {r['shape']} | {r['m']} | {cell(r['overlapped_us'])} | {cell(r.get('fastest_us'))} | "
                  f"{fastest('tiles_')} | {fastest('tiles_w16_')} | {cell(r.get('tiles_automatic_us'))} |")
    layer = [r for r in rows if r["bench"] == "gemv_layer"]
    for r in layer:
        peak_us = r["us"] * r["peak_fraction"]
        print(f"\nA layer's seven GEMVs ({r['shape']}), us per layer (% of peak)")
        for key, name in [("us", "one after another"), ("overlapped_us", "overlapping, rows layout"),
                          ("grouped_us", "grouped"), ("tiles_us", "tiles"),
                          ("grouped_tiles_us", "tiles, grouped (generation's default)"),
                          ("tiles_w16_us", "tiles, 16 warps"), ("grouped_tiles_w16_us", "tiles, grouped, 16 warps")]:
            if key in r and r[key] > 0:
                print(f"- {name}: {r[key]:.1f} ({100 * peak_us / r[key]:.0f}%)")
    matmul = [r for r in rows if r["bench"] == "matmul"]
    if matmul:
        print("\nTraining matmul against cuBLAS fp16 (ratio; goal >= 0.8 from 2048 tokens): sliced (default) / "
              "dequantization overlapping")
        print("| shape | tokens | dtype | pass | sliced | overlapping |")
        print("|---|---|---|---|---|---|")
        for r in matmul:
            flag = " (< 0.8)" if r["ratio"] < 0.8 else ""
            print(f"| {r['shape']} | {r['m']} | {r['dtype']} | {r['pass']} | {r['ratio']:.2f}{flag} | "
                  f"{r.get('overlapped_ratio', 0):.2f} |")
    wgmma = [r for r in rows if r["bench"] == "wgmma"]
    if wgmma:
        print("\nTraining matmul, Hopper tilings (wgmma) against cuBLAS fp16 (ratio), beside the sliced matmul "
              "measured in the same section; automatic picks: 128, 64 or split_k; difference: the largest of the "
              "tilings' from the sliced matmul's result, relative")
        print("| shape | tokens | dtype | pass | 128x128 | 128x64 | 128x128 split k | automatic picks | sliced "
              "| difference |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in wgmma:
            flag = " (wrong?)" if r["relative_difference"] > 1e-2 else ""
            print(f"| {r['shape']} | {r['m']} | {r['dtype']} | {r['pass']} | {r['ratio_128']:.2f} | "
                  f"{r['ratio_64']:.2f} | {r.get('ratio_split_k', 0):.2f} | {r['automatic']} | "
                  f"{r['sliced_ratio']:.2f} | {r['relative_difference']:.1e}{flag} |")
    if broken:  # what could be read is printed above; the run is still reported as incomplete
        sys.exit(f"bench_gpu_summary: {path}: {len(broken)} broken JSON line(s), the first at line {broken[0]} "
                 "(cut short? rerun bench_gpu); the figures above leave them out")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu-check/bench_gpu.txt")
