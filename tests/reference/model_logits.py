#!/usr/bin/env python3
"""Oracle for the decoder (src/model.cpp): transformers' Llama / Qwen2 / Mistral / Qwen3 on the fixture models.

For each model in DIR/models/{llama,qwen2,mistral,qwen3} it writes DIR/reference/model_logits/<model>/:
  batch.safetensors    input_ids, attention_mask, labels (3 right-padded sequences, -100 on padding),
                       inv_freq (the rotary buffer transformers computed), prompt and greedy (32 new tokens)
  fp32/bf16/fp16.safetensors  logits (float32) and loss of the batch, the model loaded in that dtype
  lora.safetensors     PEFT (all 7 projections, r=8, alpha=16, dropout 0, B random): logits, loss, and
                       grad.<peft tensor name> for every lora_A / lora_B; init.<name> = A right after
                       get_peft_model under torch.manual_seed(7) (the init order)
  adapter/             that PEFT adapter (save_pretrained)
  nf4.safetensors      logits of the model whose 7 projections are bitsandbytes quantize_4bit(nf4, 64) then
                       dequantized (the generic dequantization, as tests/reference/lora.py explains), and its
                       32 greedy tokens after the batch's prompt
  gguf_q4_0.safetensors  the same for the model as a q4_0 GGUF stores it (gguf_check.gguf_roundtrip: every 2-D
                       weight through gguf-py's quantize and dequantize, the types by llama.cpp's rules)
And window/<model> for mistral, qwen2 and qwen3: a copy of the model with a 3-token sliding window (qwen2 and
qwen3: on layer 1 only, via layer_types) and its fp32 logits, so the window mask is under test at our lengths.
"""
import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from safetensors.torch import save_file

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LENGTHS = [11, 7, 4]


def load(folder, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    # from_pretrained(dtype=...) as a user loads it: the rotary inv_freq stays fp32 (model.to(dtype) would
    # round it to the dtype, a quirk of nn.Module.to that no checkpoint load has).
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation="sdpa").eval()


def make_batch(vocab_size, seed):
    generator = torch.Generator().manual_seed(seed)
    width = max(LENGTHS)
    input_ids = torch.zeros(len(LENGTHS), width, dtype=torch.int64)
    attention_mask = torch.zeros(len(LENGTHS), width, dtype=torch.int64)
    for row, length in enumerate(LENGTHS):
        input_ids[row, :length] = torch.randint(3, vocab_size, (length,), generator=generator)
        attention_mask[row, :length] = 1
    labels = torch.where(attention_mask == 1, input_ids, torch.full_like(input_ids, -100))
    return input_ids, attention_mask, labels


def run(model, batch):
    input_ids, attention_mask, labels = batch
    output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    return output.logits.float(), output.loss.float()


def save(path, tensors):
    save_file({name: tensor.detach().contiguous().clone() for name, tensor in tensors.items()}, str(path),
              metadata={"format": "pt"})


def nf4_roundtrip(weight):
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code
    packed, state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4")
    return _dequantize_4bit_compute(packed.reshape(-1), state.absmax, _get_4bit_code("nf4", packed.device), 64,
                                    weight.shape, torch.float32)


def lora_reference(folder, batch, out):
    from peft import LoraConfig, get_peft_model
    model = load(folder)
    torch.manual_seed(7)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                  target_modules=PROJECTIONS, task_type="CAUSAL_LM"))

    def peft_name(name):  # the parameter's name in adapter_model.safetensors
        return name.replace(".default", "")

    tensors = {}
    for name, parameter in peft_model.named_parameters():
        if "lora_A" in name:
            tensors["init." + peft_name(name)] = parameter.detach().clone()
    torch.manual_seed(8)
    with torch.no_grad():  # B starts at zero; give it values so the update and A's gradient are under test
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    peft_model.save_pretrained(str(out / "adapter"))
    logits, loss = run(peft_model, batch)
    loss.backward()
    tensors["logits"], tensors["loss"] = logits, loss
    for name, parameter in peft_model.named_parameters():
        if parameter.requires_grad:
            tensors["grad." + peft_name(name)] = parameter.grad
    save(out / "lora.safetensors", tensors)


def window_reference(name, folder, batch, out):
    target = out.parent / "window" / name
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.name != "config.json":
            shutil.copy(item, target / item.name)
    config = json.loads((folder / "config.json").read_text())
    config["sliding_window"] = 3
    if name in ("qwen2", "qwen3"):
        config["use_sliding_window"] = True
        config["max_window_layers"] = 1
        config["layer_types"] = ["full_attention", "sliding_attention"]
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    logits, loss = run(load(target), batch)
    save(out.parent / "window" / f"{name}.safetensors", {"logits": logits, "loss": loss})


@torch.no_grad()
def nf4_reference(folder, batch, prompt, out):
    model = load(folder)
    for module_name, module in model.named_modules():
        if module_name.split(".")[-1] in PROJECTIONS:
            module.weight.copy_(nf4_roundtrip(module.weight))
    logits, loss = run(model, batch)
    model.generation_config.eos_token_id = None
    greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False,
                            pad_token_id=0)[0, prompt.shape[1]:]
    save(out / "nf4.safetensors", {"logits": logits, "loss": loss, "greedy": greedy})


def gguf_reference(folder, batch, prompt, out):
    """The model as a q4_0 GGUF stores it (every 2-D weight through gguf-py, types by llama.cpp's rules): logits and
    32 greedy tokens, what eval / generate --gguf-type q4_0 must give."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gguf_check import gguf_roundtrip
    model = gguf_roundtrip(load(folder), "q4_0")
    logits, loss = run(model, batch)
    model.generation_config.eos_token_id = None
    greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False,
                            pad_token_id=0)[0, prompt.shape[1]:]
    save(out / "gguf_q4_0.safetensors", {"logits": logits, "loss": loss, "greedy": greedy})


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    for seed, name in enumerate(["llama", "qwen2", "mistral", "qwen3"]):
        folder = fixtures / "models" / name
        out = fixtures / "reference" / "model_logits" / name
        out.mkdir(parents=True, exist_ok=True)
        model = load(folder)
        batch = make_batch(model.config.vocab_size, 50 + seed)
        prompt = batch[0][:1, :5]
        model.generation_config.eos_token_id = None  # 32 tokens whatever comes: the whole sequence is compared
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False,
                                pad_token_id=0)[0, prompt.shape[1]:]
        assert greedy.numel() == 32
        save(out / "batch.safetensors", {
            "input_ids": batch[0], "attention_mask": batch[1], "labels": batch[2], "prompt": prompt[0],
            "greedy": greedy, "inv_freq": model.model.rotary_emb.inv_freq.float()})
        for dtype_name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
            with torch.no_grad():
                logits, loss = run(load(folder, dtype), batch)
            save(out / f"{dtype_name}.safetensors", {"logits": logits, "loss": loss})
        lora_reference(folder, batch, out)
        nf4_reference(folder, batch, prompt, out)
        gguf_reference(folder, batch, prompt, out)
        if name in ("qwen2", "mistral", "qwen3"):
            with torch.no_grad():
                window_reference(name, folder, batch, out)
    print(f"wrote {fixtures / 'reference' / 'model_logits'}")


if __name__ == "__main__":
    main()
