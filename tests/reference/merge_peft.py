#!/usr/bin/env python3
"""Oracle for merge-adapter (src/merge.cpp): PEFT's merge_and_unload on the fixture models.

With --fixtures DIR it writes DIR/reference/merge_peft/<case>/ for the cases llama, qwen2, qwen3 (r 8, alpha 16,
all 7 projections, A and B random and non-zero) and llama_rslora (the same with use_rslora):
  adapter/                  the PEFT adapter (save_pretrained); base_model_name_or_path is the absolute
                            fixture folder, so the recorded-base checks of merge-adapter see it
  merged_fp32.safetensors   the merged state dict (float32), as merge_and_unload leaves it
  merged_fp16/_bf16.safetensors  the same cast with torch's .to(dtype) (round to nearest even)
  logits.safetensors        input_ids, attention_mask and the merged model's fp32 logits on them

With --check-merged FOLDER --case CASE (the test runs this on autotrain's output) it loads FOLDER with
transformers' AutoModelForCausalLM in fp32 and exits non-zero when its logits differ from the saved PEFT
logits by more than 1e-4.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from safetensors.torch import load_file, save_file

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = {"llama": ("llama", False), "qwen2": ("qwen2", False), "llama_rslora": ("llama", True),
         "qwen3": ("qwen3", False)}
# fp32 logits of two implementations of the same fp32 model differ by summation order only (~1e-6 here).
LOGIT_TOLERANCE = 1e-4


def load(folder):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="sdpa").eval()


def make_batch(vocab_size, seed):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return input_ids, attention_mask


def save(path, tensors):
    save_file({name: tensor.detach().contiguous().clone() for name, tensor in tensors.items()}, str(path),
              metadata={"format": "pt"})


def write_case(fixtures, case, seed):
    from peft import LoraConfig, get_peft_model
    model_name, rslora = CASES[case]
    folder = (fixtures / "models" / model_name).resolve()
    out = fixtures / "reference" / "merge_peft" / case
    out.mkdir(parents=True, exist_ok=True)
    model = load(folder)
    torch.manual_seed(100 + seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, use_rslora=rslora,
                                                  target_modules=PROJECTIONS, task_type="CAUSAL_LM"))
    with torch.no_grad():  # non-zero A and B, larger than PEFT's init, so the merge moves every weight
        for name, parameter in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    peft_model.save_pretrained(str(out / "adapter"))
    merged = peft_model.merge_and_unload().eval()
    state = merged.state_dict()
    if merged.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # not in the checkpoint (tied to embed_tokens)
    save(out / "merged_fp32.safetensors", state)
    save(out / "merged_fp16.safetensors", {k: v.to(torch.float16) for k, v in state.items()})
    save(out / "merged_bf16.safetensors", {k: v.to(torch.bfloat16) for k, v in state.items()})
    input_ids, attention_mask = make_batch(merged.config.vocab_size, 70 + seed)
    with torch.no_grad():
        logits = merged(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    save(out / "logits.safetensors", {"input_ids": input_ids, "attention_mask": attention_mask, "logits": logits})


def check_merged(fixtures, case, folder):
    expected = load_file(str(fixtures / "reference" / "merge_peft" / case / "logits.safetensors"))
    model = load(folder)
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).logits.float()
    real = expected["attention_mask"].bool()
    diff = (logits[real] - expected["logits"][real]).abs().max().item()
    print(f"{case}: transformers on {folder}: max |logits - PEFT merged logits| = {diff:.3g}")
    return 0 if diff <= LOGIT_TOLERANCE else 1


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--check-merged", help="a merged model folder to load with transformers")
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    fixtures = Path(args.fixtures)
    if args.check_merged:
        sys.exit(check_merged(fixtures, args.case, args.check_merged))
    for seed, case in enumerate(CASES):
        write_case(fixtures, case, seed)
    print(f"wrote {fixtures / 'reference' / 'merge_peft'}")


if __name__ == "__main__":
    main()
