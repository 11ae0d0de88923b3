#!/usr/bin/env python3
"""Oracle for export-gguf (src/gguf.cpp): reads autotrain's GGUF with the `gguf` PyPI package (llama.cpp's
gguf-py, GGUFReader) and checks it against the Hugging Face model folder it came from.

  gguf_check.py --fixtures DIR                           nothing to precompute (make_fixtures runs every
                                                          reference script with --fixtures); exits 0
  gguf_check.py --fixtures DIR --gguf FILE --model DIR --type f16|q8_0
                                                          exits non-zero, printing what differs

Checks: GGUF v3, the llama.cpp metadata keys against config.json, the vocabulary against the tokenizer
files (sentencepiece pieces/scores, or tokenizer.json tokens and merges), and every tensor against the
safetensors source, mapped to llama.cpp's names independently of the C++ code:
  F32 (norms, biases, rope_freqs): equal to the float32 values
  F16: equal to torch's .to(float16) cast
  Q8_0: bytes equal to gguf-py's quantize (bit-exact with ggml's reference), and dequantized within
        |x - q d16| <= d/2 + 127 |d - d16| (the rounding step plus the fp16 rounding of the scale)
q_proj / k_proj of llama-architecture models are compared after llama.cpp's permute, re-implemented here
as convert_hf_to_gguf.py's LlamaModel.permute.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch


def permute(weights, n_head, n_head_kv):  # convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def llama3_rope_factors(config):  # convert_hf_to_gguf.py LlamaModel.generate_extra_tensors
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def load_source(model_dir):
    from safetensors.torch import load_file
    tensors = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def gguf_names(config, arch):
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}  # the last two: Qwen3
    for layer in range(config["num_hidden_layers"]):
        for hf, gg in parts.items():
            for kind in ("weight", "bias"):
                names[f"model.layers.{layer}.{hf}.{kind}"] = f"blk.{layer}.{gg}.{kind}"
    return names


def check(args):
    import gguf
    errors = []
    model_dir = Path(args.model)
    config = json.loads((model_dir / "config.json").read_text())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    reader = gguf.GGUFReader(args.gguf)
    field = lambda key: reader.fields[key].contents() if key in reader.fields else None  # noqa: E731

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: {got!r} != {want!r}")

    expect("version", int(reader.fields["GGUF.version"].contents()), 3)
    expect("general.architecture", field("general.architecture"), arch)
    expect("general.alignment", field("general.alignment"), 32)
    expect("general.file_type", field("general.file_type"), 1 if args.type == "f16" else 7)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    for key, want in [("context_length", config["max_position_embeddings"]), ("embedding_length", config["hidden_size"]),
                      ("block_count", config["num_hidden_layers"]), ("feed_forward_length", config["intermediate_size"]),
                      ("attention.head_count", heads), ("attention.head_count_kv", kv_heads),
                      ("attention.key_length", config.get("head_dim") or config["hidden_size"] // heads)]:
        expect(f"{arch}.{key}", field(f"{arch}.{key}"), want)
    rope_theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    expect(f"{arch}.rope.freq_base", field(f"{arch}.rope.freq_base"), float(np.float32(rope_theta)))
    expect(f"{arch}.attention.layer_norm_rms_epsilon", field(f"{arch}.attention.layer_norm_rms_epsilon"),
           float(np.float32(config["rms_norm_eps"])))

    tokens = field("tokenizer.ggml.tokens")
    expect("token count", len(tokens), config["vocab_size"])
    if (model_dir / "tokenizer.model").exists():
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
        expect("tokenizer.ggml.model", field("tokenizer.ggml.model"), "llama")
        expect("pieces", tokens[:sp.get_piece_size()], [sp.id_to_piece(i) for i in range(sp.get_piece_size())])
        scores = field("tokenizer.ggml.scores")
        expect("scores", [float(np.float32(s)) for s in scores[:sp.get_piece_size()]],
               [float(np.float32(sp.get_score(i))) for i in range(sp.get_piece_size())])
        expect("bos", field("tokenizer.ggml.bos_token_id"), sp.bos_id())
        expect("eos", field("tokenizer.ggml.eos_token_id"), sp.eos_id())
        types = field("tokenizer.ggml.token_type")
        expect("token_type of unk/bos/byte", [types[sp.unk_id()], types[sp.bos_id()], types[tokens.index("<0x41>")]],
               [2, 3, 6])
    else:
        tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
        expect("tokenizer.ggml.model", field("tokenizer.ggml.model"), "gpt2")
        expect("tokenizer.ggml.pre", field("tokenizer.ggml.pre"), "qwen2")
        vocab = tokenizer["model"]["vocab"]
        expect("tokens", [tokens[i] for i in vocab.values()], list(vocab.keys()))
        merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
        expect("merges", field("tokenizer.ggml.merges"), merges)
        types = field("tokenizer.ggml.token_type")
        for added in tokenizer["added_tokens"]:
            expect(f"added {added['content']}", (tokens[added["id"]], types[added["id"]]),
                   (added["content"], 3 if added["special"] else 4))
        expect("padding token type", types[-1], 5)
        expect("eos", field("tokenizer.ggml.eos_token_id"), config["eos_token_id"])

    source = load_source(model_dir)
    names = gguf_names(config, arch)
    by_gguf = {names[name]: name for name in source if name in names}
    seen = set()
    for tensor in reader.tensors:
        shape = tuple(reversed([int(d) for d in tensor.shape]))  # GGUF dims are innermost first
        if tensor.name == "rope_freqs.weight":
            want = llama3_rope_factors(config)
            got = torch.from_numpy(np.array(tensor.data, dtype=np.float32))
            if (got - want).abs().max() > 1e-6:
                errors.append(f"rope_freqs differ: {got} vs {want}")
            continue
        if tensor.name not in by_gguf:
            errors.append(f"unexpected tensor {tensor.name}")
            continue
        hf = by_gguf[tensor.name]
        seen.add(hf)
        want = source[hf].float()
        if arch == "llama" and ".q_proj." in hf:
            want = permute(want, heads, heads)
        if arch == "llama" and ".k_proj." in hf:
            want = permute(want, heads, kv_heads)
        if shape != tuple(want.shape):
            errors.append(f"{tensor.name}: shape {shape} != {tuple(want.shape)}")
            continue
        kind = tensor.tensor_type.name
        if want.dim() == 1 and kind != "F32":
            errors.append(f"{tensor.name}: 1-D tensor stored as {kind}, not F32")
        if kind == "F32":
            got = torch.from_numpy(np.array(tensor.data, dtype=np.float32)).reshape(shape)
            if not torch.equal(got, want):
                errors.append(f"{tensor.name}: F32 differs by {(got - want).abs().max():.3g}")
        elif kind == "F16":
            got = torch.from_numpy(np.array(tensor.data, dtype=np.float16)).reshape(shape)
            if args.type == "q8_0" and want.shape[-1] % 32 == 0:
                errors.append(f"{tensor.name}: F16 although its rows hold whole q8_0 blocks")
            if not torch.equal(got, want.to(torch.float16)):
                errors.append(f"{tensor.name}: F16 differs from torch's fp16 cast")
        elif kind == "Q8_0":
            raw = np.array(tensor.data, dtype=np.uint8).reshape(-1)
            expected_raw = gguf.quants.quantize(want.numpy().astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            if not np.array_equal(raw, expected_raw.reshape(-1)):
                errors.append(f"{tensor.name}: Q8_0 bytes differ from gguf-py's quantize")
            got = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0).reshape(-1, 32))
            blocks = want.reshape(-1, 32)
            d = blocks.abs().amax(dim=1, keepdim=True) / 127
            bound = d / 2 + 127 * (d - d.half().float()).abs() + 1e-7
            if ((got - blocks).abs() > bound).any():
                errors.append(f"{tensor.name}: Q8_0 dequantized beyond d/2: {((got - blocks).abs() - bound).max():.3g}")
        else:
            errors.append(f"{tensor.name}: unexpected type {kind}")
    missing = [name for name in source if name not in seen and not (name == "lm_head.weight" and config.get("tie_word_embeddings"))]
    if missing:
        errors.append(f"tensors not exported: {missing}")
    for error in errors:
        print("MISMATCH", error)
    print(f"{args.gguf}: {len(reader.tensors)} tensors, {len(reader.fields)} fields, {len(errors)} mismatches")
    return 1 if errors else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--gguf")
    parser.add_argument("--model")
    parser.add_argument("--type", choices=["f16", "q8_0"], default="f16")
    args = parser.parse_args()
    if not args.gguf:
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
