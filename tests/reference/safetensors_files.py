"""Safetensors files written by the `safetensors` Python library, the oracle for src/safetensors.cpp.

Writes under DIR/reference/safetensors/:
  all_dtypes.safetensors   every dtype we read, odd shapes, a 0-d scalar, empty tensors, NaN/inf/-0/subnormals,
                           and metadata
  single/model.safetensors a one-file model folder
  sharded/                 model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  expected.json            for each file: {tensor: {dtype, shape, hex of the little-endian bytes}}, metadata;
                           the bytes come from torch, not from the file, so the reader is held to the values
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
    torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL",
}


def raw_bytes(tensor):
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(tensors):
    return {name: {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "hex": raw_bytes(t).hex()}
            for name, t in tensors.items()}


def all_dtypes():
    g = torch.Generator().manual_seed(1234)
    specials = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 1e-40, 65504.0, 3.0e38, -1.5])
    t = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        name = DTYPE_NAMES[dtype].lower()
        t[f"{name}.odd"] = torch.randn(3, 5, 7, generator=g).to(dtype)
        t[f"{name}.specials"] = specials.to(dtype)
        t[f"{name}.scalar"] = torch.tensor(2.5, dtype=dtype)
    for dtype, low, high in ((torch.int8, -128, 128), (torch.uint8, 0, 256), (torch.int32, -2**31, 2**31),
                             (torch.int64, -2**63, 2**63 - 1)):
        name = DTYPE_NAMES[dtype].lower()
        t[f"{name}.odd"] = torch.randint(low, high, (2, 3, 1, 5), generator=g, dtype=dtype)
        t[f"{name}.scalar"] = torch.tensor(-7 if dtype != torch.uint8 else 7, dtype=dtype)
    t["bool.odd"] = torch.randint(0, 2, (13,), generator=g).bool()
    t["bool.scalar"] = torch.tensor(True)
    t["empty.f32"] = torch.zeros(0, 4)
    t["empty.bf16"] = torch.zeros(3, 0, 2, dtype=torch.bfloat16)
    t["one.u8"] = torch.tensor([255], dtype=torch.uint8)  # 1 byte: the next tensor's alignment is the writer's job
    t["model.layers.0.self_attn.q_proj.weight"] = torch.randn(11, 17, generator=g).to(torch.bfloat16)
    return t


def sharded_model():
    g = torch.Generator().manual_seed(99)
    first = {"model.embed_tokens.weight": torch.randn(10, 8, generator=g).to(torch.bfloat16),
             "model.layers.0.mlp.up_proj.weight": torch.randn(12, 8, generator=g).to(torch.bfloat16)}
    second = {"model.norm.weight": torch.ones(8, dtype=torch.bfloat16),
              "lm_head.weight": torch.randn(10, 8, generator=g).to(torch.float16)}
    return first, second


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True, help="the fixtures folder (build/fixtures)")
    out = os.path.join(parser.parse_args().fixtures, "reference", "safetensors")
    os.makedirs(os.path.join(out, "single"), exist_ok=True)
    os.makedirs(os.path.join(out, "sharded"), exist_ok=True)
    expected = {}

    tensors = all_dtypes()
    metadata = {"format": "pt", "note": "héllo, wörld", "empty": ""}
    save_file(tensors, os.path.join(out, "all_dtypes.safetensors"), metadata=metadata)
    expected["all_dtypes.safetensors"] = {"metadata": metadata, "tensors": describe(tensors)}

    first, second = sharded_model()
    save_file({**first, **second}, os.path.join(out, "single", "model.safetensors"), metadata={"format": "pt"})
    expected["single/model.safetensors"] = {"metadata": {"format": "pt"}, "tensors": describe({**first, **second})}

    weight_map = {}
    for i, part in enumerate((first, second), start=1):
        shard = f"model-{i:05d}-of-00002.safetensors"
        save_file(part, os.path.join(out, "sharded", shard), metadata={"format": "pt"})
        weight_map.update({name: shard for name in part})
    total = sum(t.numel() * t.element_size() for t in {**first, **second}.values())
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    expected["sharded"] = {"metadata": {"format": "pt"}, "tensors": describe({**first, **second}),
                           "shard_of": weight_map}

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
