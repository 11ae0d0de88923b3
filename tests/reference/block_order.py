#!/usr/bin/env python3
"""Oracle for the per-epoch block order: accelerate's SeedableRandomSampler (what transformers' Trainer
uses) seeds a generator with seed + epoch and draws torch.randperm(n) from it. Writes
reference/block_order/orders.json."""
import argparse
import json
from pathlib import Path

import torch
from accelerate.data_loader import SeedableRandomSampler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "block_order"
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for n, seed in [(1, 42), (7, 42), (100, 42), (37, 1234), (1000, 0)]:
        sampler = SeedableRandomSampler(data_source=range(n), data_seed=seed)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            cases.append({"n": n, "seed": seed, "epoch": epoch, "order": list(iter(sampler))})
    (out / "orders.json").write_text(json.dumps(cases))


if __name__ == "__main__":
    main()
