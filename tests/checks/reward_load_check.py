#!/usr/bin/env python3
"""Called by tests/reward_test.cpp: a reward adapter of ours and the model merge-adapter made of it, as transformers and
PEFT load them. Loads BASE as AutoModelForSequenceClassification (num_labels 1, fp32, pad_token_id PAD as TRL sets it)
with ADAPTER through peft.PeftModel.from_pretrained (its SEQ_CLS task: the score head from modules_to_save), and
MERGED as AutoModelForSequenceClassification alone; runs OURS's right-padded input_ids (with their attention_mask) and
compares both models' rewards with OURS's "rewards".
Usage: reward_load_check.py BASE ADAPTER MERGED OURS.safetensors PAD   (exit 1 when a max |diff| > 1e-4)"""
import os
import sys

if len(sys.argv) != 6:
    sys.exit(__doc__)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

base, adapter, merged, ours, pad = sys.argv[1:]
tensors = load_file(ours)
inputs = {"input_ids": tensors["input_ids"], "attention_mask": tensors["attention_mask"]}
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
model.config.pad_token_id = int(pad)
model = PeftModel.from_pretrained(model, adapter).eval()
merged_model = AutoModelForSequenceClassification.from_pretrained(merged, dtype=torch.float32).eval()
assert merged_model.config.num_labels == 1 and merged_model.config.pad_token_id == int(pad), merged_model.config
failed = False
with torch.no_grad():
    for name, m in [("PEFT", model), ("merged", merged_model)]:
        rewards = m(**inputs).logits.squeeze(-1)
        diff = (rewards - tensors["rewards"]).abs().max().item()
        print(f"{name}: max |reward diff| {diff:.3g} over {rewards.numel()} sequences")
        failed = failed or diff > 1e-4
sys.exit(1 if failed else 0)
