#!/usr/bin/env python3
"""Oracle for the DPO trainer: TRL's DPOTrainer (sigmoid loss, beta 0.1) + PEFT LoRA on the llama fixture, fp32,
CPU, 2 epochs of 6 optimizer steps over 21 preference pairs (22 records, one dropped for a prompt that fills
max_length), batch 2, accumulation 2 with a short last window, max_length 40 (keep_start truncation), clipping on,
evaluation each epoch on 5 pairs. The reference policy is the base model with the adapter disabled: the adapter is
made by TRL from a peft_config (a PeftModel handed to TRL 1.16 would get a frozen copy of itself, "ref", as the
reference instead), then every lora_B is drawn from normal(0, 0.02) so that the policy differs from the reference
from the first step. Writes, under reference/dpo_trl/:
  train.jsonl valid.jsonl    the preference records {"prompt", "chosen", "rejected"}
  tokens.json                per split, the kept records in dataset order as TRL prepared them
                             ({"prompt_ids", "chosen_ids", "rejected_ids"}: BOS on the prompt, "</s>" appended to a
                             completion lacking it, the completion starting where the tokenized prompt and
                             prompt+completion diverge), and "dropped": the jsonl indices TRL filtered out
  initial/ final/            PEFT adapters (save_pretrained) before and after training
  steps.json                 per optimizer step: "loss" (the sum over the step's micro-batches of what
                             training_step returns, i.e. the mean of their mean-over-pairs losses, unrounded),
                             "micro_losses" (those mean-over-pairs losses), "lr", "order" (the train positions,
                             in tokens.json order, of each micro-batch's pairs), the DPO metrics TRL logs
                             (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
                             logps/rejected: the unweighted mean over the step's micro-batches of their means over
                             pairs); "eval_loss" per epoch (the mean over the eval pairs of their losses: the eval
                             batches' mean-over-pairs losses weighted by their pairs, 2, 2, 1) and
                             "eval_batch_losses"
  settings.json              the hyperparameters, for the C++ side to use the same."""
import argparse
import json
import math
import os
import random
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig, DPOTrainer

MAX_LENGTH = 40
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected"]
# Per train record: (prompt tokens, chosen tokens, rejected tokens, kind), the token counts being targets without
# BOS (the phrase grows word by word until it has at least that many). Kinds: "long" (a prompt that alone fills
# max_length: dropped), "mid" (the prompt ends mid-word, both completions go on with the word), "eos_c" / "eos_r" /
# "eos_cr" (the chosen / rejected / both already end with the eos text).
TRAIN = [(8, 6, 4, ""), (4, 24, 18, ""), (14, 4, 6, "eos_c"), (7, 8, 5, "mid"), (1, 1, 1, ""), (20, 18, 14, ""),
         (6, 9, 9, "eos_cr"), (50, 5, 5, "long"), (5, 1, 4, "eos_r"), (2, 3, 2, ""), (16, 25, 20, ""),
         (5, 10, 2, ""), (9, 6, 8, "mid"), (8, 12, 12, ""), (2, 6, 16, ""), (12, 8, 4, "eos_c"), (4, 15, 6, ""),
         (10, 4, 10, ""), (22, 14, 16, ""), (3, 2, 3, "eos_r"), (3, 2, 5, ""), (9, 30, 3, "")]
VALID = [(6, 5, 7, ""), (12, 20, 9, ""), (3, 4, 4, "eos_c"), (9, 8, 3, "mid"), (18, 10, 15, "")]


def load_words(path):
    words = path.read_text(encoding="utf-8").split()
    return [w for w in words if len(w) <= 10]


def phrase(rng, words, tokenizer, target):
    out = []
    while not out or len(tokenizer(text=" ".join(out), add_special_tokens=False)["input_ids"]) < target:
        out.append(rng.choice(words))
    return " ".join(out)


def make_records(specs, rng, words, tokenizer):
    eos = tokenizer.eos_token
    splittable = sorted({w for w in words if w.isascii() and w.isalpha() and len(w) >= 6})
    records = []
    for prompt_n, chosen_n, rejected_n, kind in specs:
        prompt = phrase(rng, words, tokenizer, prompt_n)
        chosen = " " + phrase(rng, words, tokenizer, chosen_n)
        rejected = " " + phrase(rng, words, tokenizer, rejected_n)
        if kind == "mid":
            # A word cut in two: its start ends the prompt, its rest starts both completions. Pick a word whose
            # tokens merge across the cut, so the tokenized prompt is not a prefix of prompt+completion.
            while True:
                word = rng.choice(splittable)
                cut = len(word) // 2
                head = prompt + " " + word[:cut]
                prompt_ids = tokenizer(text=head)["input_ids"]
                full_ids = tokenizer(text=head + word[cut:] + chosen)["input_ids"]
                if full_ids[:len(prompt_ids)] != prompt_ids:
                    break
            prompt, chosen, rejected = head, word[cut:] + chosen, word[cut:] + "s" + rejected
        if kind in ("eos_c", "eos_cr"):
            chosen += eos
        if kind in ("eos_r", "eos_cr"):
            rejected += eos
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return records


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class RecordingTrainer(DPOTrainer):
    """Keeps every micro-batch's loss unrounded (training_step's value and compute_loss's raw mean over pairs), its
    DPO metrics, which train pairs it held, and every eval batch's loss."""

    def __init__(self, *args, lookup=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookup = lookup
        self.micro = []  # (global_step, training_step value, raw loss, window size, positions, {metric: value})
        self.eval_batch_losses = []
        self._raw = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        assert num_items_in_batch is None  # the collator gives no "labels", so the Trainer counts no items
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model.training:
            self._raw = result.item()
        return result

    def training_step(self, model, inputs, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        pairs = ids.shape[0] // 2
        positions = [self.lookup[tuple(ids[i][mask[i] == 1].tolist())] for i in range(pairs)]
        loss = super().training_step(model, inputs, num_items_in_batch)
        metrics = {name: self._metrics["train"][name][-1] for name in METRICS}
        self.micro.append((self.state.global_step, loss.item(), self._raw, self.current_gradient_accumulation_steps,
                           positions, metrics))
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        self.eval_batch_losses.append(loss.item())
        return loss, logits, labels


class LearningRates(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def prepared(dataset):
    return [{"prompt_ids": r["prompt_ids"], "chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]}
            for r in dataset]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    # One thread: the same numbers (checked against two) and much faster on small shared machines, where torch's
    # thread pool makes each of these tiny matmuls take milliseconds
    torch.set_num_threads(1)
    out = fixtures / "reference" / "dpo_trl"
    out.mkdir(parents=True, exist_ok=True)
    model_dir = fixtures / "models" / "llama"
    root = Path(__file__).resolve().parents[2]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token is None
    words = load_words(root / "tests" / "data" / "multilingual.txt")
    rng = random.Random(20240611)
    write_jsonl(out / "train.jsonl", make_records(TRAIN, rng, words, tokenizer))
    write_jsonl(out / "valid.jsonl", make_records(VALID, rng, words, tokenizer))
    train_records, valid_records = read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")
    # The index column survives TRL's map/filter (so the dropped records can be named) and is removed by the Trainer
    # before collation (it is no signature column).
    train_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(train_records)])
    valid_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(valid_records)])

    settings = {"beta": 0.1, "loss_type": "sigmoid", "max_length": MAX_LENGTH, "truncation_mode": "keep_start",
                "lr": 2e-3, "batch_size": 2, "eval_batch_size": 2, "gradient_accumulation": 2, "epochs": 2,
                "scheduler": "linear", "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5,
                "optimizer": "adamw_torch", "seed": 42, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                "target_modules": TARGETS, "reference": "base model (adapter disabled)"}

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = DPOConfig(output_dir=str(out / "hf-run"), beta=settings["beta"], max_length=MAX_LENGTH,
                     truncation_mode="keep_start", learning_rate=settings["lr"], per_device_train_batch_size=2,
                     per_device_eval_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=2,
                     lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=0.5,
                     optim="adamw_torch", seed=42, logging_steps=1, eval_strategy="epoch", save_strategy="no",
                     report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
                     precompute_ref_log_probs=False, bf16=False, fp16=False, gradient_checkpointing=False,
                     dataset_num_proc=None, padding_free=False, pad_to_multiple_of=None)
    lrs = LearningRates()
    peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = RecordingTrainer(model=model, ref_model=None, args=args, train_dataset=train_dataset,
                               eval_dataset=valid_dataset, processing_class=tokenizer, peft_config=peft_config,
                               callbacks=[lrs])
    peft_model = trainer.model
    assert trainer.ref_model is None and list(peft_model.peft_config) == ["default"]
    pad_id = trainer.data_collator.pad_token_id
    assert pad_id == tokenizer.eos_token_id

    # B non-zero from the start, so the policy differs from the (adapter-disabled) reference from step 1
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02, generator=generator)
    peft_model.save_pretrained(out / "initial")

    train_kept, valid_kept = prepared(trainer.train_dataset), prepared(trainer.eval_dataset)
    train_index, valid_index = list(trainer.train_dataset["index"]), list(trainer.eval_dataset["index"])
    dropped = sorted(set(range(len(train_records))) - set(train_index))
    assert dropped == [i for i, s in enumerate(TRAIN) if s[3] == "long"], dropped
    assert list(valid_index) == list(range(len(valid_records)))
    for i, r in enumerate(train_records):  # the long prompt is the only one filling max_length
        assert (len(tokenizer(text=r["prompt"])["input_ids"]) >= MAX_LENGTH) == (i in dropped), i
    assert len(train_kept) == 21
    for index, record in zip(train_index + valid_index, train_kept + valid_kept):
        assert record["prompt_ids"][0] == tokenizer.bos_token_id
        assert record["chosen_ids"][-1] == tokenizer.eos_token_id and record["rejected_ids"][-1] == tokenizer.eos_token_id
    lengths = [len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in train_kept]
    assert sum(n > MAX_LENGTH for n in lengths) >= 4 and sum(n < 20 for n in lengths) >= 4, lengths
    mid = []  # records whose tokenized prompt is longer than the common prefix TRL kept
    for split, records, kept, index in [("train", train_records, train_kept, train_index),
                                        ("valid", valid_records, valid_kept, valid_index)]:
        for position, i in enumerate(index):
            full = tokenizer(text=records[i]["prompt"])["input_ids"]
            if len(kept[position]["prompt_ids"]) < len(full):
                mid.append((split, i))
    assert mid == [("train", i) for i, s in enumerate(TRAIN) if s[3] == "mid"] + \
        [("valid", i) for i, s in enumerate(VALID) if s[3] == "mid"], mid
    (out / "tokens.json").write_text(json.dumps({"train": train_kept, "valid": valid_kept, "dropped": dropped}))

    # What the collator puts in a row (prompt+chosen, keep_start truncated) -> its train position
    trainer.lookup = {}
    for position, r in enumerate(train_kept):
        key = tuple((r["prompt_ids"] + r["chosen_ids"])[:MAX_LENGTH])
        assert key not in trainer.lookup
        trainer.lookup[key] = position

    trainer.train()

    steps = {}
    for step, loss, raw, window, positions, metrics in trainer.micro:
        assert abs(loss - raw / window) <= 1e-6 * max(1.0, abs(raw)), (loss, raw, window)
        steps.setdefault(step, []).append((loss, raw, positions, metrics))
    order = [s for s in sorted(steps)]
    assert order == list(range(12)), order
    windows = [len(steps[s]) for s in order]
    assert windows == [2, 2, 2, 2, 2, 1] * 2 and len(trainer.micro) == 22, windows
    assert len(lrs.lrs) == 12, len(lrs.lrs)
    micro_positions = [m[4] for m in trainer.micro]
    assert [len(p) for p in micro_positions] == ([2] * 10 + [1]) * 2
    for epoch in range(2):  # accelerate's SeedableRandomSampler: randperm(n) from a generator seeded seed + epoch
        seen = [p for ps in micro_positions[11 * epoch:11 * (epoch + 1)] for p in ps]
        expected = torch.randperm(21, generator=torch.Generator().manual_seed(42 + epoch)).tolist()
        assert seen == expected, (epoch, seen, expected)

    history = [h for h in trainer.state.log_history if "rewards/chosen" in h]
    assert len(history) == 12, len(history)
    result = {"loss": [sum(m[0] for m in steps[s]) for s in order],
              "micro_losses": [[m[1] for m in steps[s]] for s in order],
              "lr": lrs.lrs,
              "order": [[m[2] for m in steps[s]] for s in order]}
    for name in METRICS:
        result[name] = [h[name] for h in history]
        for s, h in zip(order, history):  # TRL logs the plain mean of the micro-batch values
            values = [m[3][name] for m in steps[s]]
            assert abs(h[name] - sum(values) / len(values)) <= 1e-6 * max(1.0, abs(h[name])), (name, s)
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and len(trainer.eval_batch_losses) == 6, (len(evals), len(trainer.eval_batch_losses))
    result["eval_loss"] = [h["eval_loss"] for h in evals]
    result["eval_batch_losses"] = [trainer.eval_batch_losses[:3], trainer.eval_batch_losses[3:]]
    # Trainer repeats each batch's loss eval_batch_size times and accelerate's gather_for_metrics cuts the last batch
    # to the dataset's remainder, so eval_loss weighs each batch by its pairs: the mean over the 5 pairs' losses
    for value, batches in zip(result["eval_loss"], result["eval_batch_losses"]):
        weighted = (2 * batches[0] + 2 * batches[1] + batches[2]) / 5
        assert abs(value - weighted) <= 1e-6 * max(1.0, abs(value)), (value, batches)
    for h, loss in zip(history, result["loss"]):  # the logged loss is our step loss, rounded
        assert abs(h["loss"] - loss) <= 1e-4 * max(1.0, abs(loss)), (h["loss"], loss)

    peft_model.save_pretrained(out / "final")
    settings.update({"pad_token_id": pad_id, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "eos_token": tokenizer.eos_token,
                     "warmup_steps": args.get_warmup_steps(12), "steps": 12, "steps_per_epoch": 6,
                     "micro_batches_per_epoch": 11, "train_pairs": 21, "valid_pairs": 5})
    assert settings["warmup_steps"] == math.ceil(12 * 0.1)
    (out / "steps.json").write_text(json.dumps(result))
    (out / "settings.json").write_text(json.dumps(settings))


if __name__ == "__main__":
    main()
