#!/usr/bin/env python3
"""Oracle for the optimizers of AutoTrain's `optimizer` key: each is built by transformers' Trainer itself
(Trainer.create_optimizer with TrainingArguments(optim=name, weight_decay=0.01), so the class, its arguments and
the weight-decay parameter groups are the ones a real run gets: torch.optim, transformers' Adafactor,
bitsandbytes' 32-bit Lion and RMSprop), then stepped 12 times over three parameters shaped like LoRA's (A, B
starting at zero) plus a vector, with seeded gradients and a learning rate that changes every step as a schedule
would. Writes reference/optimizers/steps.json: per optimizer the initial values, each step's lr and gradients,
and the parameters after every step."""
import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from transformers import Trainer, TrainingArguments

# The names transformers' Trainer knows that autotrain runs as the same update ("adamw" and "adam" are AutoTrain
# UI names transformers does not accept; autotrain maps them to torch's AdamW and Adam, checked in the training
# loop test). The 8-bit names run as their 32-bit update in autotrain and are not compared here.
OPTIMIZERS = ["adamw_torch", "adamw_torch_fused", "paged_adamw_32bit", "sgd", "adagrad", "rmsprop", "rmsprop_bnb",
              "rmsprop_bnb_32bit", "lion_32bit", "paged_lion_32bit", "adafactor"]
STEPS = 12


class Parameters(torch.nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.lora_A = torch.nn.Parameter(torch.randn(4, 24, generator=generator) * 0.1)
        self.lora_B = torch.nn.Parameter(torch.zeros(20, 4))  # LoRA's B starts at zero
        self.vector = torch.nn.Parameter(torch.randn(8, generator=generator))  # Adafactor's unfactored case


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "optimizers"
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name in OPTIMIZERS:
        model = Parameters()
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(output_dir=scratch, optim=name, learning_rate=1e-3, weight_decay=0.01,
                                     report_to=[], use_cpu=True)
            optimizer = Trainer(model=model, args=args).create_optimizer()
        decayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
        assert len(decayed) == 3, f"{name}: every parameter should take weight decay, as LoRA's A and B do"
        names = [n for n, _ in model.named_parameters()]
        case = {"optimizer": name, "weight_decay": 0.01,
                "initial": {n: p.detach().tolist() for n, p in model.named_parameters()}, "steps": []}
        generator = torch.Generator().manual_seed(11)
        for step in range(STEPS):
            lr = 1e-3 * (0.25 + 0.75 * (STEPS - step) / STEPS)  # a decaying schedule, so lr is read every step
            for group in optimizer.param_groups:
                group["lr"] = lr
            grads = {}
            for n, p in model.named_parameters():
                # magnitudes from 1e-4 to 1: Adafactor's update clipping and eps, Lion's sign, and a wide range
                # of moments all matter
                scale = 10.0 ** (-(step % 5))
                p.grad = torch.randn(p.shape, generator=generator) * scale
                grads[n] = p.grad.tolist()
            optimizer.step()
            optimizer.zero_grad()
            case["steps"].append({"lr": lr, "grads": grads,
                                  "after": {n: p.detach().tolist() for n, p in model.named_parameters()}})
        assert names == ["lora_A", "lora_B", "vector"]
        cases.append(case)
    (out / "steps.json").write_text(json.dumps(cases))


if __name__ == "__main__":
    main()
