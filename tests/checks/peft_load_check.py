#!/usr/bin/env python3
"""Called by tests/finetune_test.cpp: loads BASE with transformers and ADAPTER with
peft.PeftModel.from_pretrained, runs OURS's input_ids and compares with OURS's logits.
Usage: peft_load_check.py BASE ADAPTER OURS.safetensors   (exit 1 when max |diff| > 1e-4)"""
import os
import sys

if len(sys.argv) != 4:
    sys.exit(__doc__)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

base, adapter, ours = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter).eval()
tensors = load_file(ours)
with torch.no_grad():
    logits = model(input_ids=tensors["input_ids"]).logits
diff = (logits - tensors["logits"]).abs().max().item()
print(f"max |logit diff| {diff:.3g}")
sys.exit(0 if diff <= 1e-4 else 1)
