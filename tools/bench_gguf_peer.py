#!/usr/bin/env python3
"""The Python peer of `autotrain export-gguf` for tools/bench_gguf.sh: what llama.cpp's convert_hf_to_gguf.py does
per tensor, with the same library (gguf-py): each safetensors tensor read as float32, q/k permuted for llama, cast or
quantized by gguf.quants.quantize (f16, bf16, q8_0 and q4_0: the types gguf-py can make) and streamed into the file
one tensor at a time (the converter's lazy mode; GGUFWriter with tensor infos first). It writes the tensors and the
model keys, not the vocabulary (the converter reads that too: this peer is the lighter of the two).

  bench_gguf_peer.py MODEL_DIR OUT.gguf TYPE
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
from gguf_check import gguf_names, permute  # noqa: E402  (the oracle's independent name map and permutation)


def main():
    import gguf
    model_dir, out, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[kind]
    config = json.loads((model_dir / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    names = gguf_names(config, "llama")
    files = sorted(model_dir.glob("*.safetensors"))
    plan = []  # (file, hf name, gguf name, shape, ggml type)
    for file in files:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                shape = tuple(f.get_slice(name).get_shape())
                kind_here = qtype if len(shape) >= 2 and shape[-1] % 32 == 0 else gguf.GGMLQuantizationType.F32
                plan.append((file, name, names[name], shape, kind_here))
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    for _, _, gguf_name, shape, ggml_type in plan:
        byte_shape = gguf.quant_shape_to_byte_shape(shape, ggml_type) if ggml_type not in (
            gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else shape
        dtype = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}.get(
            ggml_type, np.uint8)
        nbytes = int(np.prod(byte_shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(gguf_name, byte_shape, np.dtype(dtype), nbytes, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for file, name, _, shape, ggml_type in plan:
        with safe_open(str(file), "pt") as f:
            values = f.get_tensor(name).float()
        if ".q_proj." in name:
            values = permute(values, heads, heads)
        if ".k_proj." in name:
            values = permute(values, heads, kv_heads)
        data = gguf.quants.quantize(values.numpy(), ggml_type) if ggml_type != gguf.GGMLQuantizationType.F32 \
            else values.numpy()
        writer.write_tensor_data(data)
    writer.close()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
