#!/usr/bin/env python3
"""Oracle: the learning rate at every optimizer step from transformers' get_scheduler(), for each
schedule autotrain supports, several run lengths and warmup ratios. Writes reference/schedules/lr.json."""
import argparse
import json
import math
from pathlib import Path

import torch
from transformers import get_scheduler

SCHEDULES = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "schedules"
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name in SCHEDULES:
        for total in (1, 2, 7, 100, 1000):
            for warmup_ratio in (0.0, 0.03, 0.1, 0.33, 1.0):
                lr = 2e-4
                optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
                warmup = math.ceil(total * warmup_ratio)  # TrainingArguments.get_warmup_steps
                scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
                rates = []
                for step in range(total):
                    rates.append(optimizer.param_groups[0]["lr"])  # the rate the optimizer step uses
                    optimizer.step()
                    if step + 1 < total:  # polynomial divides by zero past the end when warmup == total
                        scheduler.step()
                cases.append({"scheduler": name, "lr": lr, "total_steps": total, "warmup_ratio": warmup_ratio,
                              "warmup_steps": warmup, "rates": rates})
    (out / "lr.json").write_text(json.dumps(cases))


if __name__ == "__main__":
    main()
