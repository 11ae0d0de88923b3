#!/usr/bin/env python3
"""Oracle for dynamic loss scaling: torch.amp.GradScaler (defaults, growth_interval shortened to 5 so the
growth shows) over a scripted run of clean and overflowing steps; records the scale before each step and
whether the step was taken. Writes reference/grad_scaler/steps.json."""
import argparse
import json
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "grad_scaler"
    out.mkdir(parents=True, exist_ok=True)
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    # device "cpu": GradScaler works on the CPU since torch 2.3.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=5)
    pattern = "ccccc ccccc i cccc i i ccccc ccccc c".replace(" ", "")  # c: clean step, i: inf gradient
    steps = []
    for kind in pattern:
        optimizer.zero_grad()
        scale_before = scaler.get_scale()
        loss = (parameter * torch.tensor([1.0, 2.0, 3.0])).sum()
        if kind == "i":
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        before = parameter.detach().clone()
        scaler.step(optimizer)
        scaler.update()
        steps.append({"kind": kind, "scale": scale_before, "taken": not torch.equal(before, parameter.detach()),
                      "parameter": parameter.detach().tolist()})
    (out / "steps.json").write_text(json.dumps({"growth_interval": 5, "steps": steps}))


if __name__ == "__main__":
    main()
