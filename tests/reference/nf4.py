#!/usr/bin/env python3
"""Oracle for 4-bit quantization: bitsandbytes.functional.quantize_4bit / dequantize_4bit on the CPU, over
odd shapes, dtypes, NF4 / FP4, block sizes and double quantization. Each tensor is written as raw
little-endian bytes (<case>.<name>.bin) and described in reference/nf4/cases.json."""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # bitsandbytes torch.compiles its CPU helpers: slow here
import torch
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code

SHAPES = [(64,), (1, 1), (3, 5), (7, 64), (33, 65), (128, 96), (257, 31), (1000,), (13, 17, 3)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "nf4"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cases = []

    def save(case, name, tensor):
        tensor = tensor.contiguous()
        raw = tensor.view(torch.int16) if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
        raw.numpy().tofile(out / f"{case}.{name}.bin")
        return {"dtype": str(tensor.dtype).replace("torch.", ""), "shape": list(tensor.shape)}

    for shape_index, shape in enumerate(SHAPES):
        for dtype_name, dtype in DTYPES.items():
            for quant_type in ("nf4", "fp4"):
                for blocksize in (64, 128):
                    for double in (False, True):
                        case = f"c{len(cases)}"
                        # Heavy tails and an exact zero block edge case: real weights are not uniform.
                        weight = (torch.randn(shape) * torch.rand(shape).pow(3) * 0.2).to(dtype)
                        if shape_index == 0:
                            weight[:8] = 0
                        packed, state = F.quantize_4bit(weight, blocksize=blocksize, quant_type=quant_type,
                                                        compress_statistics=double)
                        # bitsandbytes' generic dequantization (its default backend, the semantics of its CUDA
                        # kernel). Its CPU C kernel is wrong when a block spans rows (blocksize > last dim, e.g.
                        # 7x64 with blocksize 128 returns other values), so it is not the oracle here.
                        absmax = state.absmax
                        if double:
                            absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
                        dequantized = _dequantize_4bit_compute(
                            packed.reshape(-1), absmax, _get_4bit_code(quant_type, packed.device), blocksize,
                            weight.shape, weight.dtype)
                        entry = {"case": case, "quant_type": quant_type, "blocksize": blocksize, "double": double,
                                 "tensors": {"weight": save(case, "weight", weight),
                                             "packed": save(case, "packed", packed.reshape(-1)),
                                             "absmax": save(case, "absmax", state.absmax),
                                             "dequantized": save(case, "dequantized", dequantized)}}
                        if double:
                            entry["offset"] = float(state.offset)
                            entry["tensors"]["nested_absmax"] = save(case, "nested_absmax", state.state2.absmax)
                            entry["tensors"]["nested_code"] = save(case, "nested_code", state.state2.code)
                        cases.append(entry)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
