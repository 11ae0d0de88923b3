#!/usr/bin/env python3
"""Oracle for "log": "tensorboard" (src/tensorboard.cpp): reads autotrain's event files with TensorBoard's own
loader (EventAccumulator, which checks every record's CRC-32C) and compares them with the run's metrics.jsonl.

  tensorboard_check.py --fixtures DIR                  nothing to precompute; exits 0
  tensorboard_check.py --logdir RUN_DIR --metrics FILE  exits non-zero, printing what differs

Checks: the first event is file_version "brain.Event:2"; the scalar tags are transformers' names (train/loss,
train/learning_rate, train/grad_norm, train/epoch, eval/loss, ...); each tag's steps and values are those of
metrics.jsonl (values as float32, the type of simple_value), wall times within a millisecond."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def tag_of(key):  # transformers' rewrite_logs, with our "lr" as its "learning_rate"
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    return "train/" + ("learning_rate" if key == "lr" else key)


def check(logdir, metrics):
    from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    errors = []
    files = sorted(Path(logdir).glob("events.out.tfevents.*"))
    if len(files) != 1:
        return [f"expected one event file in {logdir}, found {len(files)}"]
    first = next(iter(event_file_loader.EventFileLoader(str(files[0])).Load()))
    if first.file_version != "brain.Event:2":
        errors.append(f"first event: file_version {first.file_version!r}")
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    expected = {}
    for line in Path(metrics).read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key in ("step", "time") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            expected.setdefault(tag_of(key), []).append((record["step"], float(np.float32(value)), record["time"]))
    got_tags = sorted(accumulator.Tags()["scalars"])
    if got_tags != sorted(expected):
        errors.append(f"tags {got_tags} != {sorted(expected)}")
    for tag in set(got_tags) & set(expected):
        got = [(e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)]
        want = expected[tag]
        if [(s, v) for s, v, _ in got] != [(s, v) for s, v, _ in want]:
            errors.append(f"{tag}: {got[:3]}... != {want[:3]}...")
        elif any(abs(a[2] - b[2]) > 1e-3 for a, b in zip(got, want)):
            errors.append(f"{tag}: wall times differ")
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "train/epoch"):
        if tag not in got_tags:
            errors.append(f"missing {tag}")
    return errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures")
    parser.add_argument("--logdir")
    parser.add_argument("--metrics")
    args = parser.parse_args()
    if args.logdir is None:
        return 0
    errors = check(args.logdir, args.metrics)
    for error in errors:
        print(error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
