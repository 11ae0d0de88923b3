#!/usr/bin/env python3
"""Oracle: the learning rate at every optimizer step from transformers' get_scheduler(), for each
schedule autotrain supports, several run lengths and warmup ratios. Writes reference/schedules/lr.json; and
reference/schedules/plateau.json: get_scheduler("reduce_lr_on_plateau") (torch's ReduceLROnPlateau) stepped
with scripted eval losses, as the Trainer steps it after each evaluation, and the rate after each."""
import argparse
import json
import math
from pathlib import Path

import torch
from transformers import get_scheduler

SCHEDULES = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
             "inverse_sqrt"]


def plateau_cases():
    """Eval-loss sequences: flat, steadily improving, improving by less than the 1e-4 relative threshold, a NaN
    first and in the middle, long enough to be cut several times, and from a rate small enough that a cut would
    change it by less than eps (1e-8), which torch then skips."""
    generator = torch.Generator().manual_seed(3)
    noisy = (2.0 + 0.01 * torch.randn(80, generator=generator)).tolist()
    within_threshold = [2.0 * (1 - 0.05e-4) ** i for i in range(40)]  # 20 evaluations make one improvement
    return [
        (2e-4, [1.5] * 40),
        (2e-4, [3.0 - 0.01 * i for i in range(30)]),
        (2e-4, within_threshold),
        (2e-4, [float("nan")] + [1.0] * 14 + [float("nan")] * 3 + [0.9] * 20),
        (1e-3, noisy),
        (3e-8, [1.0] * 40),
    ]


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

    plateaus = []
    for lr, losses in plateau_cases():
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        # the Trainer passes warmup and total steps; this schedule ignores both
        scheduler = get_scheduler("reduce_lr_on_plateau", optimizer, num_warmup_steps=3, num_training_steps=100)
        rates = []
        for loss in losses:
            scheduler.step(loss)
            rates.append(optimizer.param_groups[0]["lr"])
        # JSON has no NaN: null stands for it
        plateaus.append({"lr": lr, "eval_losses": [None if math.isnan(x) else x for x in losses], "rates": rates})
    (out / "plateau.json").write_text(json.dumps(plateaus))


if __name__ == "__main__":
    main()
