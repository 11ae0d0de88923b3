#!/usr/bin/env python3
"""Oracle for `autotrain eval` (src/evaluate.cpp): the loss of the llama fixture, alone and with a PEFT adapter,
on a split of texts tokenized and packed as AutoTrain's default trainer does (each text + the eos token as a
string, transformers' tokenizer with its special tokens, the ids concatenated and cut into blocks, the remainder
dropped; labels = input_ids). Writes reference/evaluation/:
  data/valid.jsonl   the texts ("text" column): the first 120 lines of tests/data/multilingual.txt
  adapter/           a PEFT LoRA adapter for the fixture (r 4, alpha 8, q_proj, v_proj, down_proj; B drawn non-zero)
  expected.json      block_size, the blocks' ids, the token count, and the mean loss per predicted token
                     (transformers' causal-LM loss summed over every block / blocks x (block_size - 1)) for the
                     base alone and with the adapter, its 7 projections in fp32 ("none") or NF4 round-tripped by
                     bitsandbytes ("int4": quantize_4bit nf4, blocksize 64, then dequantized), or every 2-D weight as a
                     GGUF of q4_0 / q8_0 stores it ("gguf_q4_0", "gguf_q8_0": gguf-py's quantize and dequantize, the
                     types by llama.cpp's rules), the model in fp32; and for `autotrain imatrix`, over the same
                     blocks, each 2-D weight's input statistics (by GGUF name: the sums over every token of the
                     squares of its input columns, float64, and the tokens; forward pre-hooks on transformers'
                     projections and LM head, llama-imatrix's collector) for the base alone and with the adapter."""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gguf_check: the GGUF type rules and names
ROOT = Path(__file__).resolve().parent.parent.parent
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BLOCK_SIZE = 48
TEXTS = 120


def nf4_roundtrip(weight):
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code
    packed, state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4")
    return _dequantize_4bit_compute(packed.reshape(-1), state.absmax, _get_4bit_code("nf4", packed.device), 64,
                                    weight.shape, torch.float32)


def blocks_of(tokenizer, texts):
    ids = []
    for text in texts:
        ids += tokenizer(text + tokenizer.eos_token)["input_ids"]
    usable = len(ids) // BLOCK_SIZE * BLOCK_SIZE
    return torch.tensor(ids[:usable], dtype=torch.int64).reshape(-1, BLOCK_SIZE), len(ids)


@torch.no_grad()
def mean_loss(model, blocks):
    total = 0.0
    for batch in blocks.split(3):
        logits = model(input_ids=batch).logits.float()
        total += torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   batch[:, 1:].reshape(-1), reduction="sum").item()
    return total / (blocks.shape[0] * (BLOCK_SIZE - 1))


@torch.no_grad()
def input_squares(model, blocks):
    """{GGUF name: (sums of x^2 per input column, tokens)} of every projection and the LM head over the blocks."""
    import re
    from gguf_check import gguf_names
    config = json.loads(model.config.to_json_string())
    arch = config["model_type"] if config["model_type"] in ("qwen2", "qwen3") else "llama"
    names = gguf_names(config, arch)
    tied = bool(config.get("tie_word_embeddings"))
    sums, hooks = {}, []
    for name, module in model.named_modules():
        hf = re.sub(r"^base_model\.model\.", "", name)
        if hf == "lm_head":
            key = "token_embd.weight" if tied else names["lm_head.weight"]
        elif hf.split(".")[-1] in PROJECTIONS and hf.startswith("model.layers."):
            key = names[hf + ".weight"]
        else:
            continue

        def hook(module, args, key=key):
            x = args[0].double().reshape(-1, args[0].shape[-1])
            total, tokens = sums.get(key, (0.0, 0))
            sums[key] = (total + x.square().sum(0), tokens + x.shape[0])
        hooks.append(module.register_forward_pre_hook(hook))
    for batch in blocks.split(3):
        model(input_ids=batch)
    for handle in hooks:
        handle.remove()
    return {key: {"sums": total.tolist(), "tokens": tokens} for key, (total, tokens) in sums.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    out = fixtures / "reference" / "evaluation"
    (out / "data").mkdir(parents=True, exist_ok=True)
    texts = (ROOT / "tests" / "data" / "multilingual.txt").read_text(encoding="utf-8").splitlines()[:TEXTS]
    with open(out / "data" / "valid.jsonl", "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")

    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir = fixtures / "models" / "llama"
    blocks, tokens = blocks_of(AutoTokenizer.from_pretrained(str(model_dir)), texts)

    def load(quantization):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        if quantization.startswith("gguf_"):
            from gguf_check import gguf_roundtrip
            return gguf_roundtrip(model, quantization[len("gguf_"):])
        if quantization == "int4":
            with torch.no_grad():
                for name, module in model.named_modules():
                    if name.split(".")[-1] in PROJECTIONS:
                        module.weight.copy_(nf4_roundtrip(module.weight))
        return model

    torch.manual_seed(11)
    peft_model = get_peft_model(load("none"), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                         target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 1.0)
    peft_model.save_pretrained(str(out / "adapter"))

    losses = {}
    for quantization in ("none", "int4", "gguf_q4_0", "gguf_q8_0"):
        losses[quantization] = {
            "base": mean_loss(load(quantization), blocks),
            "adapter": mean_loss(PeftModel.from_pretrained(load(quantization), str(out / "adapter")).eval(), blocks),
        }
    imatrix = {"base": input_squares(load("none"), blocks),
               "adapter": input_squares(PeftModel.from_pretrained(load("none"), str(out / "adapter")).eval(), blocks)}
    expected = {"block_size": BLOCK_SIZE, "tokens": tokens, "blocks": blocks.tolist(), "loss": losses,
                "imatrix": imatrix}
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
