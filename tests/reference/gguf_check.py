#!/usr/bin/env python3
"""Oracle for export-gguf (src/gguf.cpp): reads autotrain's GGUF with the `gguf` PyPI package (llama.cpp's
gguf-py, GGUFReader) and checks it against the Hugging Face model folder it came from.

  gguf_check.py --fixtures DIR                           writes DIR/reference/gguf/{llama,qwen2}_wide: models
                                                          whose rows are whole 256-value blocks, 12 layers; and
                                                          reference/gguf/mixtures/: real models' shapes with
                                                          each type's expected per-tensor types
  gguf_check.py --fixtures DIR --gguf FILE --model DIR --type TYPE [--gguf ... --model ... --type ...]
                                                          exits non-zero, printing what differs
  gguf_check.py --fixtures DIR --lora FILE:CASE:TYPE [--lora ...]
                                                          a LoRA GGUF of reference/merge_peft/CASE/adapter against
                                                          PEFT's merge of it (check_lora)

Checks: GGUF v3, the llama.cpp metadata keys against config.json, the vocabulary against the tokenizer
files (sentencepiece pieces/scores, or tokenizer.json tokens and merges), the chat template(s) against what
gguf-py's SpecialVocab finds (tokenizer_config.json, chat_template.jinja, chat_template.json), and every tensor against the
safetensors source, mapped to llama.cpp's names independently of the C++ code:
  F32 (norms, biases, rope_freqs): equal to the float32 values
  F16 / BF16: equal to torch's .to(float16) / .to(bfloat16) cast
  Q8_0: bytes equal to gguf-py's quantize (bit-exact with ggml's reference), and dequantized within
        |x - q d16| <= d/2 + 127 |d - d16| (the rounding step plus the fp16 rounding of the scale)
  Q4_0, Q4_1, Q5_0, Q5_1: bytes equal to gguf-py's quantize
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (gguf-py cannot quantize them; tests/ggml_quants_test.cpp holds our bytes to
        ggml's own): gguf-py's dequantization within a relative RMS error of 0.375 / 0.19 / 0.09 / 0.045 / 0.023 of
        the weights (the wide fixtures' Gaussian weights give 0.30 / 0.15 / 0.071 / 0.036 / 0.018: the bounds are
        1.25x that, below the next coarser type's), and no value farther than 4 of its sub-block's steps
and each 2-D weight's type against llama.cpp's choice: the converter's type for f32 / f16 / bf16 / q8_0, and for the
llama-quantize presets its per-tensor mixture (llama-quant.cpp llama_tensor_get_type, re-implemented here as a walk
over the weights in llama-quantize's name order with its counters, as that code does), with its fallbacks.
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


# Mistral's tekken split (Mistral Nemo / Small 3 tokenizer.json), llama.cpp's "tekken".
TEKKEN_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
                  r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def pre_name(pre_tokenizer):
    """llama.cpp's tokenizer.ggml.pre for the byte-level pre-tokenizers here (convert_hf_to_gguf.py tells them apart by a
    hash of their output: qwen2 and llama-bpe by their Split regex, gpt-2 by ByteLevel's own, smollm by Digits then
    ByteLevel)."""
    steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    regexes = [s["pattern"].get("Regex") for s in steps if s.get("type") == "Split"]
    if regexes and regexes[0] == TEKKEN_PATTERN:
        return "tekken"
    if regexes and "\\p{N}{1,3}" in regexes[0]:
        return "llama-bpe"
    if regexes:
        return "qwen2"
    kinds = [(s["type"], s.get("individual_digits"), s.get("use_regex"), s.get("add_prefix_space")) for s in steps]
    if kinds == [("ByteLevel", None, True, False)]:
        return "gpt-2"
    if kinds == [("Digits", True, None, None), ("ByteLevel", None, True, False)]:
        return "smollm"
    return "default"


def is_sentencepiece_json(tokenizer):
    """BPE with byte fallback and no ByteLevel pre-tokenizer: a Llama-2 / Mistral tokenizer.json (what
    convert_hf_to_gguf.py's LlamaHfVocab takes)."""
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    return tokenizer["model"].get("byte_fallback", False) and not any(s.get("type") == "ByteLevel" for s in steps)


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


CONVERTER_TYPES = {"f32": ("F32", 0), "f16": ("F16", 1), "bf16": ("BF16", 32), "q8_0": ("Q8_0", 7)}
PRESETS = {"q4_0": ("Q4_0", 2), "q4_1": ("Q4_1", 3), "q5_0": ("Q5_0", 8), "q5_1": ("Q5_1", 9), "q2_k": ("Q2_K", 10),
           "q2_k_s": ("Q2_K", 21),
           "q3_k_s": ("Q3_K", 11), "q3_k_m": ("Q3_K", 12), "q3_k_l": ("Q3_K", 13), "q4_k_s": ("Q4_K", 14),
           "q4_k_m": ("Q4_K", 15), "q5_k_s": ("Q5_K", 16), "q5_k_m": ("Q5_K", 17), "q6_k": ("Q6_K", 18),
           "iq4_nl": ("IQ4_NL", 25), "iq4_xs": ("IQ4_XS", 30)}
BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q2_K": 256,
         "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "IQ4_NL": 32, "IQ4_XS": 256}
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}


def expected_types(weights, preset, n_layer, tied, seventy_b, n_gqa, output_type=None, embd_type=None, pure=False,
                   has_imatrix=False):
    """weights: {gguf name: columns} of the 2-D weights -> {name: ggml type name}, as llama-quantize (llama-quant.cpp
    llama_tensor_get_type_impl, read at llama.cpp 007dbbf3) chooses them for a dense model: a walk in its tensor order
    (a std::map's, by name) with its attn_v / ffn_down counters. n_gqa: query heads per kv head. output_type /
    embd_type / pure: llama-quantize's --output-tensor-type / --token-embedding-type / --pure (llama_tensor_get_type:
    the two types are taken as given, before the mixture and without its fallbacks; --pure skips the mixture).
    has_imatrix: llama-quantize was given an importance matrix (qs.has_imatrix), which moves q4_0 / q5_0's first
    eighth of ffn_down to q4_1 / q5_1."""
    if preset in CONVERTER_TYPES:
        kind = CONVERTER_TYPES[preset][0]
        return {name: kind if columns % BLOCK[kind] == 0 else "F16" for name, columns in weights.items()}
    default = PRESETS[preset][0]
    n_attention_wv = sum("attn_v.weight" in name for name in weights)
    i_attention_wv = i_ffn_down = 0

    def use_more_bits(i, n):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    chosen = {}
    for name in sorted(weights, key=lambda n: n.encode()):
        columns, new = weights[name], default
        if embd_type and name == "token_embd.weight":
            chosen[name] = embd_type
            continue
        if output_type and name == "output.weight":
            chosen[name] = output_type
            continue
        if pure:
            pass
        elif name == "output.weight" or (tied and name == "token_embd.weight"):
            new = output_type or ("Q8_0" if columns % BLOCK[default] else ("Q6_K" if default != "Q8_0" else "Q8_0"))
        elif name == "token_embd.weight":
            pass
        elif "attn_v.weight" in name:
            if preset == "q2_k":
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif preset == "q2_k_s" and n_gqa >= 4:
                new = "Q4_K"
            elif preset == "q3_k_m":
                new = "Q5_K" if i_attention_wv < 2 else "Q4_K"
            elif preset == "q3_k_l":
                new = "Q5_K"
            elif preset in ("q4_k_m", "q5_k_m") and use_more_bits(i_attention_wv, n_attention_wv):
                new = "Q6_K"
            elif preset == "q4_k_s" and i_attention_wv < 4:
                new = "Q5_K"
            elif preset in ("iq4_nl", "iq4_xs") and n_gqa >= 4:
                new = "Q5_K"
            if seventy_b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            i_attention_wv += 1
        elif "ffn_down" in name:
            if preset == "q2_k":
                new = "Q3_K"
            elif preset == "q2_k_s":
                if i_ffn_down < n_layer // 8:
                    new = "Q4_K"
            elif preset == "q3_k_m":
                new = "Q5_K" if i_ffn_down < n_layer // 16 else "Q4_K"  # (Falcon alone keeps some Q3_K)
            elif preset == "q3_k_l":
                new = "Q5_K"
            elif preset in ("q4_k_m", "q5_k_m") and use_more_bits(i_ffn_down, n_layer):
                new = "Q6_K"
            elif i_ffn_down < n_layer // 8 and preset in ("iq4_nl", "iq4_xs") and not has_imatrix:
                new = "Q5_K"
            elif preset == "q4_k_s" and i_ffn_down < n_layer // 8:
                new = "Q5_K"
            elif preset in ("q4_0", "q5_0") and has_imatrix and i_ffn_down < n_layer // 8:
                new = "Q4_1" if preset == "q4_0" else "Q5_1"
            i_ffn_down += 1
        elif "attn_output.weight" in name:
            new = {"q2_k": "Q3_K", "q3_k_m": "Q4_K", "q3_k_l": "Q5_K"}.get(preset, new)
        if columns % BLOCK[new]:  # llama-quant.cpp tensor_type_fallback (q4_0 ... have none there: f16 here)
            new = FALLBACK.get(new, "F16")
            if columns % BLOCK[new]:
                new = "F16"
        chosen[name] = new
    return chosen


def gguf_roundtrip(model, preset):
    """A transformers model whose every 2-D weight is what a GGUF of `preset` stores, dequantized by gguf-py (llama.cpp's
    package): the types from llama.cpp's rules (expected_types), the values from gguf-py's own quantize (q4_0 ... q8_0
    and f16, which the narrow fixture weights get; K-quants it cannot make). For eval / generate --gguf-type."""
    import gguf
    config = json.loads(model.config.to_json_string())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    names = gguf_names(config, arch)
    state = {name: p for name, p in model.named_parameters() if p.dim() == 2 and name in names}
    tied = bool(config.get("tie_word_embeddings"))
    if tied:
        state.pop("lm_head.weight", None)  # the embedding's own tensor
    heads = config["num_attention_heads"]
    types = expected_types({names[n]: p.shape[-1] for n, p in state.items()}, preset, config["num_hidden_layers"],
                           tied, False, heads // (config.get("num_key_value_heads") or heads))
    with torch.no_grad():
        for name, parameter in state.items():
            qtype = getattr(gguf.GGMLQuantizationType, types[names[name]])
            raw = gguf.quants.quantize(parameter.float().numpy(), qtype)
            parameter.copy_(torch.from_numpy(np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32)))
    return model


K_QUANT_RMS = {"Q2_K": 0.375, "Q3_K": 0.19, "Q4_K": 0.09, "Q5_K": 0.045, "Q6_K": 0.023, "IQ4_NL": 0.1,
               "IQ4_XS": 0.1}


def weighted_error(got, want, importance):
    """sum(qw (got - want)^2) / sum(qw want^2), qw one weight a column: the error an importance matrix minimises."""
    qw = torch.as_tensor(importance, dtype=torch.float64)
    return ((got.double() - want.double()).pow(2) * qw).sum().item() / (want.double().pow(2) * qw).sum().item()


def check_values(gguf, tensor, kind, want, errors, importance=None):
    """The stored values of one tensor against the float32 source `want` (already permuted). importance: its
    importance-matrix entry, if it was quantized with one (q8_0 ignores it, as ggml's quantize_q8_0 does)."""
    shape = tuple(want.shape)
    if kind == "F32":
        got = torch.from_numpy(np.array(tensor.data, dtype=np.float32)).reshape(shape)
        if not torch.equal(got, want):
            errors.append(f"{tensor.name}: F32 differs by {(got - want).abs().max():.3g}")
    elif kind in ("F16", "BF16"):
        dtype = torch.float16 if kind == "F16" else torch.bfloat16
        raw = torch.from_numpy(np.array(tensor.data).view(np.int16))  # the 16-bit patterns, reinterpreted below
        if not torch.equal(raw.view(dtype).reshape(shape), want.to(dtype)):
            errors.append(f"{tensor.name}: {kind} differs from torch's cast")
    elif kind in ("Q4_0", "Q4_1", "Q5_0", "Q5_1") and importance is not None:
        # gguf-py has no importance-weighted quantizer (ggml's bytes are held by tests/data/ggml_quants): the weighted
        # error must fall well below that of gguf-py's plain quantization of the same tensor.
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        raw = np.array(tensor.data, dtype=np.uint8).reshape(-1)
        got = torch.from_numpy(gguf.quants.dequantize(raw, qtype)).reshape(shape)
        plain_raw = gguf.quants.quantize(want.numpy().astype(np.float32), qtype)
        plain = torch.from_numpy(gguf.quants.dequantize(plain_raw, qtype)).reshape(shape)
        ours, theirs = weighted_error(got, want, importance), weighted_error(plain, want, importance)
        if not ours < 0.9 * theirs:
            errors.append(f"{tensor.name}: {kind} with its importance: weighted error {ours:.4g}, plain {theirs:.4g}")
    elif kind in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        raw = np.array(tensor.data, dtype=np.uint8).reshape(-1)
        if not np.array_equal(raw, gguf.quants.quantize(want.numpy().astype(np.float32), qtype).reshape(-1)):
            errors.append(f"{tensor.name}: {kind} bytes differ from gguf-py's quantize")
        if kind == "Q8_0":
            got = torch.from_numpy(gguf.quants.dequantize(raw, qtype).reshape(-1, 32))
            blocks = want.reshape(-1, 32)
            d = blocks.abs().amax(dim=1, keepdim=True) / 127
            bound = d / 2 + 127 * (d - d.half().float()).abs() + 1e-7
            if ((got - blocks).abs() > bound).any():
                errors.append(f"{tensor.name}: Q8_0 dequantized beyond d/2: {((got - blocks).abs() - bound).max():.3g}")
    elif kind in K_QUANT_RMS:
        raw = np.array(tensor.data, dtype=np.uint8).reshape(-1)
        got = torch.from_numpy(gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, kind))).reshape(shape)
        rms = ((got - want).pow(2).mean() / want.pow(2).mean()).sqrt().item()
        bound = K_QUANT_RMS[kind] * (1.25 if importance is not None else 1.0)  # fitted to the weighted error instead
        if not rms <= bound:
            errors.append(f"{tensor.name}: {kind} relative RMS error {rms:.4f} > {bound}")
        if kind.startswith("IQ"):  # a non-linear table: no even step to hold the values to
            return
        # A sub-block's step: its range over the codes (3, 7, 15, 31 or 63 of them).
        sub = 16 if kind in ("Q2_K", "Q3_K", "Q6_K") else 32
        levels = {"Q2_K": 3, "Q3_K": 7, "Q4_K": 15, "Q5_K": 31, "Q6_K": 63}[kind]
        blocks = want.reshape(-1, sub)
        step = (blocks.amax(1, keepdim=True) - blocks.amin(1, keepdim=True)).clamp_min(1e-12) / levels
        worst = ((got.reshape(-1, sub) - blocks).abs() / step).max().item()
        # (With an importance matrix a column that matters little may be given up for one that matters much.)
        if worst > 4 and importance is None:
            errors.append(f"{tensor.name}: {kind} value off by {worst:.2f} of its sub-block's step")
    else:
        errors.append(f"{tensor.name}: unexpected type {kind}")


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
    # TYPE[+output=T][+embd=T][+pure]: the --type and llama-quantize's overrides given to export-gguf
    preset, *extras = args.type.lower().split("+")
    overrides = dict(extra.split("=", 1) if "=" in extra else (extra, True) for extra in extras)
    imatrix = {}
    if overrides.get("imatrix"):  # export-gguf --imatrix FILE: llama-quantize's record of it, after the rest
        from imatrix_files import read_values
        imatrix, datasets, chunks = read_values(overrides["imatrix"])
        keys = list(reader.fields)
        want_keys = ["quantize.imatrix.file"] + (["quantize.imatrix.dataset"] if datasets else []) + \
            ["quantize.imatrix.entries_count"] + (["quantize.imatrix.chunks_count"] if chunks > 0 else [])
        expect("the quantize.imatrix keys, last", keys[-len(want_keys):], want_keys)
        expect("quantize.imatrix.file", field("quantize.imatrix.file"), overrides["imatrix"][:127])
        if datasets:
            expect("quantize.imatrix.dataset", field("quantize.imatrix.dataset"), datasets[0][:127])
        expect("quantize.imatrix.entries_count", field("quantize.imatrix.entries_count"), len(imatrix))
        if chunks > 0:
            expect("quantize.imatrix.chunks_count", field("quantize.imatrix.chunks_count"), chunks)
    expect("general.file_type", field("general.file_type"), {**CONVERTER_TYPES, **PRESETS}[preset][1])
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
    elif is_sentencepiece_json(json.loads((model_dir / "tokenizer.json").read_text())):
        # convert_hf_to_gguf.py's _set_vocab_llama_hf: gguf-py's LlamaHfVocab, pre "default"
        vocab = gguf.LlamaHfVocab(model_dir)
        want = list(vocab.all_tokens())
        expect("tokenizer.ggml.model", field("tokenizer.ggml.model"), "llama")
        expect("tokenizer.ggml.pre", field("tokenizer.ggml.pre"), "default")
        expect("tokens", tokens[:len(want)], [text.decode() for text, _, _ in want])
        expect("scores", [float(x) for x in field("tokenizer.ggml.scores")[:len(want)]], [score for _, score, _ in want])
        expect("token types", list(field("tokenizer.ggml.token_type")[:len(want)]), [int(kind) for _, _, kind in want])
        expect("bos", field("tokenizer.ggml.bos_token_id"), vocab.tokenizer.bos_token_id)
        expect("eos", field("tokenizer.ggml.eos_token_id"), vocab.tokenizer.eos_token_id)
    else:
        tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
        expect("tokenizer.ggml.model", field("tokenizer.ggml.model"), "gpt2")
        expect("tokenizer.ggml.pre", field("tokenizer.ggml.pre"), pre_name(tokenizer["pre_tokenizer"]))
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

    # The chat template as llama.cpp's converter finds and writes it (gguf-py's SpecialVocab, add_chat_template).
    templates = gguf.SpecialVocab(model_dir, load_merges=False).chat_template
    if isinstance(templates, list):
        named = {"".join(c if c.isascii() and c.isalnum() else "_" for c in t.get("name", "")): t["template"]
                 for t in templates if t.get("name") and t.get("template") is not None}
        expect("tokenizer.chat_template", field("tokenizer.chat_template"), named.pop("default", None))
        expect("tokenizer.chat_templates", sorted(field("tokenizer.chat_templates") or []), sorted(named))
        for name, template in named.items():
            expect(f"tokenizer.chat_template.{name}", field(f"tokenizer.chat_template.{name}"), template)
    else:
        expect("tokenizer.chat_template", field("tokenizer.chat_template"), templates)

    source = load_source(model_dir)
    names = gguf_names(config, arch)
    by_gguf = {names[name]: name for name in source if name in names}
    seen = set()
    stored = {}
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
        if want.dim() >= 2:
            stored[tensor.name] = kind
        entry = imatrix.get(tensor.name)
        weighted = want.dim() >= 2 and BLOCK.get(kind, 1) > 1 and entry is not None and entry.size == shape[-1]
        check_values(gguf, tensor, kind, want, errors, entry if weighted else None)
    weights = {names[hf]: source[hf].shape[-1] for hf in seen if source[hf].dim() >= 2}
    seventy_b = config["num_hidden_layers"] == 80 and (arch == "qwen2" or (arch == "llama" and kv_heads != heads))
    tied = "output.weight" not in weights
    for name, kind in expected_types(weights, preset, config["num_hidden_layers"], tied, seventy_b, heads // kv_heads,
                                     (overrides.get("output") or "").upper() or None,
                                     (overrides.get("embd") or "").upper() or None, bool(overrides.get("pure")),
                                     bool(imatrix)).items():
        if stored.get(name) != kind:
            errors.append(f"{name}: stored as {stored.get(name)}, llama.cpp's choice is {kind}")
    missing = [name for name in source if name not in seen and not (name == "lm_head.weight" and config.get("tie_word_embeddings"))]
    if missing:
        errors.append(f"tensors not exported: {missing}")
    for error in errors:
        print("MISMATCH", error)
    print(f"{args.gguf}: {len(reader.tensors)} tensors, {len(reader.fields)} fields, {len(errors)} mismatches")
    return 1 if errors else 0


LORA_TYPES = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}


def element_error(values, kind):
    """A bound on |stored - exact| of each element of a tensor stored as `kind` (float64 in, float64 out)."""
    if kind == "F32":
        return values.abs() * 2.0 ** -24
    if kind == "F16":
        return values.abs() * 2.0 ** -11 + 2.0 ** -25
    if kind == "BF16":
        return values.abs() * 2.0 ** -8
    if kind == "Q8_0":  # half a step of absmax / 127, plus the fp16 rounding of the scale times 127
        blocks = values.reshape(-1, 32).abs().amax(dim=1, keepdim=True) / 127
        return (blocks * (0.5 + 127 * 2.0 ** -11)).expand(-1, 32).reshape(values.shape)
    raise ValueError(kind)


def check_lora(args, fixtures):
    """A LoRA GGUF (export-gguf --adapter) against PEFT: for every adapted weight, llama.cpp's delta
    (alpha / r) * lora_b @ lora_a, with r lora_a's rows, must be PEFT's merge_and_unload delta (merged - base, rows
    permuted for llama's q/k) within the storage error of lora_a and lora_b."""
    import gguf
    errors = []
    case_dir = Path(fixtures) / "reference" / "merge_peft" / args.case
    adapter_config = json.loads((case_dir / "adapter" / "adapter_config.json").read_text())
    model_dir = Path(adapter_config["base_model_name_or_path"])
    config = json.loads((model_dir / "config.json").read_text())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    reader = gguf.GGUFReader(args.gguf)
    field = lambda key: reader.fields[key].contents() if key in reader.fields else None  # noqa: E731
    for key, want in [("general.architecture", arch), ("general.type", "adapter"), ("adapter.type", "lora"),
                      ("general.file_type", LORA_TYPES[args.type])]:
        if field(key) != want:
            errors.append(f"{key}: {field(key)!r} != {want!r}")
    alpha = field("adapter.lora.alpha")
    base = load_source(model_dir)
    merged = load_file_any(case_dir / "merged_fp32.safetensors")
    names = gguf_names(config, arch)
    by_gguf = {names[name]: name for name in base if name in names}
    tensors = {t.name: t for t in reader.tensors}
    expected = {hf for hf in base if base[hf].dim() == 2 and not torch.equal(base[hf], merged[hf])}
    seen = set()
    for name, tensor in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        weight = name[:-len(".lora_a")]
        hf = by_gguf.get(weight)
        if hf is None or weight + ".lora_b" not in tensors:
            errors.append(f"{name}: no base weight or no lora_b partner")
            continue
        seen.add(hf)
        b_tensor = tensors[weight + ".lora_b"]
        a = torch.from_numpy(gguf.quants.dequantize(np.array(tensor.data), tensor.tensor_type)).double()
        b = torch.from_numpy(gguf.quants.dequantize(np.array(b_tensor.data), b_tensor.tensor_type)).double()
        out_features, in_features = base[hf].shape
        if a.shape[-1] != in_features or b.shape[0] != out_features or a.shape[0] != b.shape[1]:
            errors.append(f"{weight}: lora_a {tuple(a.shape)} / lora_b {tuple(b.shape)} do not fit "
                          f"{tuple(base[hf].shape)}")
            continue
        for t, kind in ((tensor, tensor.tensor_type.name), (b_tensor, b_tensor.tensor_type.name)):
            want_kind = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[args.type]
            columns = int(t.shape[0])  # GGUF dims innermost first
            if kind != (want_kind if columns % (32 if want_kind == "Q8_0" else 1) == 0 else "F16"):
                errors.append(f"{t.name}: stored as {kind} under --type {args.type}")
        scale = alpha / a.shape[0]
        delta = scale * (b @ a)
        want = merged[hf].double() - base[hf].double()
        if arch == "llama" and ".q_proj." in hf:
            want = permute(want, heads, heads)
        if arch == "llama" and ".k_proj." in hf:
            want = permute(want, heads, kv_heads)
        error_a = element_error(a, tensor.tensor_type.name)
        error_b = element_error(b, b_tensor.tensor_type.name)
        # The stored matrices' error through the product; PEFT's fp32 merge: B @ A summed over r in fp32, times
        # its scaling, added to W (each rounded to fp32); the f32 alpha in the file.
        bound = abs(scale) * (b.abs() @ error_a + error_b @ a.abs() + error_b @ error_a) + \
            abs(scale) * (b.abs() @ a.abs()) * (a.shape[0] + 2) * 2.0 ** -24 + \
            (merged[hf].double().abs() + delta.abs()) * 2.0 ** -23
        excess = ((delta - want).abs() - bound).max().item()
        if args.verbose:
            print(f"{weight}: max |delta| {delta.abs().max().item():.3g}, max |difference| "
                  f"{(delta - want).abs().max().item():.3g}, margin {-excess:.3g}")
        if excess > 0:
            errors.append(f"{weight}: llama.cpp's delta differs from PEFT's by {excess:.3g} beyond the bound")
    if seen != expected:
        errors.append(f"adapted weights: GGUF has {len(seen)}, PEFT changed {len(expected)} "
                      f"(missing {sorted(expected - seen)[:3]})")
    for error in errors:
        print("MISMATCH", error)
    print(f"{args.gguf}: {len(reader.tensors)} tensors, alpha {alpha}, {len(errors)} mismatches")
    return 1 if errors else 0


def load_file_any(path):
    from safetensors.torch import load_file
    return {name: value.float() for name, value in load_file(str(path)).items()}


def make_wide_models(fixtures):
    """Two models whose rows are whole K-quant blocks (256 values), 12 layers (so that llama-quantize's name order,
    blk.0, blk.1, blk.10, blk.11, blk.2, ..., differs from the layer order), weights N(0, 0.02) as an LLM's, bf16."""
    import shutil
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    import transformers
    transformers.utils.logging.disable_progress_bar()
    common = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=12, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, max_position_embeddings=512)
    specs = {"llama_wide": (LlamaConfig, LlamaForCausalLM, "sentencepiece",
                            dict(vocab_size=1000, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
             "qwen2_wide": (Qwen2Config, Qwen2ForCausalLM, "bpe",
                            dict(vocab_size=1024, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                                 num_key_value_heads=1))}  # 4 query heads a kv head: q2_K's attn_v takes q4_K
    for seed, (name, (config_class, model_class, tokenizer, extra)) in enumerate(specs.items()):
        torch.manual_seed(77 + seed)
        model = model_class(config_class(**{**common, **extra})).eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.02) if parameter.dim() >= 2 else parameter.normal_(1.0, 0.05)
        folder = Path(fixtures) / "reference" / "gguf" / name
        model.to(torch.bfloat16).save_pretrained(str(folder))
        for item in (Path(fixtures) / "tokenizers" / tokenizer).iterdir():
            shutil.copy(item, folder / item.name)


# Real models' shapes for the type mixture (no weights: meta tensors): (model_type, config), llama.cpp's 70B rule
# (80 layers: Llama-3-70B, Qwen2.5-72B; not an 80-layer llama without grouped kv heads, LLaMA-65B's shape), query
# heads per kv head 1 / 4 / 7 / 8, tied embeddings, and Qwen2.5-0.5B's 896-wide rows (not whole K-quant blocks).
MIXTURE_CASES = {
    "llama3_8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                                num_key_value_heads=8, vocab_size=128256)),
    "llama3_70b": ("llama", dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                 num_attention_heads=64, num_key_value_heads=8, vocab_size=128256)),
    "llama_65b_shape": ("llama", dict(hidden_size=8192, intermediate_size=22016, num_hidden_layers=80,
                                      num_attention_heads=64, num_key_value_heads=64, vocab_size=32000)),
    "llama2_7b": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                                num_key_value_heads=32, vocab_size=32000)),
    "mistral_7b": ("mistral", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=32768)),
    "qwen2_5_0_5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                   num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)),
    "qwen2_5_72b": ("qwen2", dict(hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                                  num_attention_heads=64, num_key_value_heads=8, vocab_size=152064,
                                  tie_word_embeddings=False)),
    "qwen3_8b": ("qwen3", dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False)),
}


def make_mixture_cases(fixtures):
    """reference/gguf/mixtures/<case>/: config.json, tensors.json (the HF checkpoint's names and shapes, from a model
    built on the meta device) and expected.json (every --type, the presets also with an importance matrix: each 2-D
    weight's type by llama.cpp's rules)."""
    import transformers
    for case, (model_type, values) in MIXTURE_CASES.items():
        config = transformers.AutoConfig.for_model(model_type, **values)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        config.architectures = [type(model).__name__]
        folder = Path(fixtures) / "reference" / "gguf" / "mixtures" / case
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(config.to_json_string())
        cfg = json.loads(config.to_json_string())
        shapes = [(name, list(p.shape)) for name, p in model.state_dict().items()]
        (folder / "tensors.json").write_text(json.dumps(shapes))
        arch = cfg["model_type"] if cfg["model_type"] in ("qwen2", "qwen3") else "llama"
        names = gguf_names(cfg, arch)
        tied = bool(cfg.get("tie_word_embeddings"))
        weights = {names[n]: shape[-1] for n, shape in shapes
                   if len(shape) == 2 and n in names and not (tied and n == "lm_head.weight")}
        heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        seventy_b = cfg["num_hidden_layers"] == 80 and (arch == "qwen2" or (arch == "llama" and kv_heads != heads))
        # Every --type, and each preset also with an importance matrix ("q4_0+imatrix"); q2_K_S only with one.
        expected = {}
        for preset in {**CONVERTER_TYPES, **PRESETS}:
            for has_imatrix in (False, True) if preset in PRESETS else (False,):
                if preset == "q2_k_s" and not has_imatrix:
                    continue
                expected[preset + ("+imatrix" if has_imatrix else "")] = expected_types(
                    weights, preset, cfg["num_hidden_layers"], tied, seventy_b, heads // kv_heads,
                    has_imatrix=has_imatrix)
        (folder / "expected.json").write_text(json.dumps(expected, indent=0, sort_keys=True))


def check_round_trip(gguf_file, weights_file, model_dir):
    """eval / generate --gguf-type's weights (a safetensors file of them, by HF name, HF row order) against the same
    export's GGUF, dequantized by gguf-py: each 2-D weight equal, after llama's q/k row permutation."""
    import gguf
    from safetensors.torch import load_file
    config = json.loads((Path(model_dir) / "config.json").read_text())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    names = gguf_names(config, arch)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    stored = {t.name: t for t in gguf.GGUFReader(gguf_file).tensors}
    errors = []
    weights = load_file(weights_file)
    for hf, got in weights.items():
        tensor = stored[names[hf]]
        shape = tuple(reversed([int(d) for d in tensor.shape]))
        want = torch.from_numpy(np.asarray(gguf.quants.dequantize(np.array(tensor.data), tensor.tensor_type),
                                           dtype=np.float32)).reshape(shape)
        if arch == "llama" and ".q_proj." in hf:
            got = permute(got, heads, heads)
        if arch == "llama" and ".k_proj." in hf:
            got = permute(got, heads, kv_heads)
        if not torch.equal(got.float(), want):
            errors.append(f"{hf}: differs from {names[hf]} ({tensor.tensor_type.name}) by {(got - want).abs().max():.3g}")
    for error in errors:
        print("MISMATCH", error)
    print(f"{weights_file}: {len(weights)} weights against {gguf_file}, {len(errors)} mismatches")
    return 1 if errors or not weights else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--gguf", action="append", default=[], help="a GGUF file; repeat with --model and --type")
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--type", action="append", default=[])
    parser.add_argument("--lora", action="append", default=[],
                        help="FILE:CASE:TYPE, a LoRA GGUF of merge_peft's adapter CASE written as TYPE")
    parser.add_argument("--round-trip", help="GGUF:WEIGHTS:MODEL, --gguf-type's weights against that export")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.round_trip:
        return check_round_trip(*args.round_trip.split(":"))
    if args.lora:
        failed = 0
        for item in args.lora:
            gguf_file, case, kind = item.rsplit(":", 2)
            failed += check_lora(argparse.Namespace(gguf=gguf_file, case=case, type=kind, verbose=args.verbose),
                                 args.fixtures)
        return 1 if failed else 0
    if not args.gguf:
        make_wide_models(args.fixtures)
        make_mixture_cases(args.fixtures)
        return 0
    if not len(args.gguf) == len(args.model) == len(args.type):
        parser.error("give --gguf, --model and --type once per file")
    failed = 0
    for gguf, model, kind in zip(args.gguf, args.model, args.type):
        failed += check(argparse.Namespace(gguf=gguf, model=model, type=kind))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
