#!/usr/bin/env python3
r"""Oracle for the ORPO trainer (AutoTrain's trainer "orpo"): TRL 1.16's ORPOTrainer (trl.experimental.orpo; beta
0.1) + PEFT LoRA (r 8, alpha 16, q/k/v/o_proj, lora_dropout 0.05, which TRL turns off), fp32, CPU, batch 2,
accumulation 2 (a short last window when the micro-batches are odd), clipping on, evaluation each epoch on 5 pairs. No
reference model. The adapter is made by TRL from a peft_config, then every lora_B is drawn from normal(0, 0.02) (as
tests/reference/dpo_trl.py does). The llama fixture (sentencepiece, BOS), text preference data: the records of
reference/dpo_trl/ (train.jsonl, valid.jsonl, copied byte for byte), max_length 40, 2 epochs of 6 optimizer steps
over 21 pairs.

TRL 1.16's ORPOConfig has no max_prompt_length (AutoTrain's ORPOConfig(max_prompt_length=...) is a TypeError there)
and uses max_completion_length for encoder-decoders only, so a prompt is never cut: a completion is cut to
max_length - len(prompt), keeping its start, after the eos was appended. ORPOTrainer drops no record: one whose prompt
alone fills max_length (train record 7: 51 tokens) keeps its whole prompt and an empty completion, its per-token mean
log-probability is 0/0 = NaN, and so is the loss and every gradient of any micro-batch holding it (checked below), which
would make the whole run NaN. This oracle therefore drops that record before TRL sees it (the C++ side drops it with a
warning, as its DPO does), and records TRL's ids for it under "dropped_tokens".

Writes under reference/orpo_trl/:
  train.jsonl valid.jsonl    the preference records {"prompt", "chosen", "rejected"}, as reference/dpo_trl/'s
  tokens.json                per split, the kept records in dataset order, exactly as ORPOTrainer.tokenize_row made
                             them: prompt_input_ids, chosen_input_ids, chosen_labels, rejected_input_ids,
                             rejected_labels (BOS-led, prompt part -100 in the labels, the completion starting where
                             the tokenized prompt stops being a prefix of prompt+completion, "</s>" appended when
                             missing, then cut to max_length); "dropped": the train jsonl indices dropped;
                             "dropped_tokens": TRL's rows for them (with "index")
  initial/ final/            PEFT adapters (save_pretrained; target_modules sorted) before and after training
  steps.json                 per optimizer step: "loss" (the sum over the step's micro-batches of what training_step
                             returns, i.e. the mean of their losses, unrounded), "micro_losses" (compute_loss's
                             values), "lr", "order" (the train positions, in tokens.json order, of each micro-batch's
                             pairs), "grad_norm", and every metric ORPOTrainer logs (METRICS: the unweighted mean over
                             the step's micro-batches of their values); per epoch "eval_loss" (the mean over the 5 eval
                             pairs: the 3 batches' losses weighted 2, 2, 1), "eval_batch_losses" and the eval_ metrics
                             (the unweighted mean over the 3 eval batches)
  settings.json              the hyperparameters, pad / bos / eos ids, step counts."""
import argparse
import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

# this folder is on sys.path when run as a script
from dpo_trl import (LearningRates, Recording, assert_dropout_off, draw_lora_b, lora_config, read_jsonl, save_adapter,
                     step_counts, step_results)

MAX_LENGTH = 40
EPOCHS = 2
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# What get_batch_loss_metrics logs (orpo_trainer.py get_batch_loss_metrics), in its order
METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/rejected",
           "logps/chosen", "logits/rejected", "logits/chosen", "nll_loss", "log_odds_ratio", "log_odds_chosen"]
TOKEN_KEYS = ["prompt_input_ids", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]


class RecordingTrainer(Recording, ORPOTrainer):
    """Records (Recording) the ORPO metrics, each pair found by its train jsonl index."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions = None  # train jsonl index -> position in the kept train records

    def positions_of(self, inputs):
        return [self.positions[i] for i in inputs["index"]]  # remove_unused_columns is False: "index" survives

    def micro_metrics(self):
        metrics = {name: values[-1] for name, values in self._stored_metrics["train"].items()}
        assert list(metrics) == METRICS, list(metrics)
        return metrics


def tokens(row):
    return {k: list(row[k]) for k in TOKEN_KEYS}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    torch.set_num_threads(1)  # the same numbers, and much faster for these tiny matmuls
    source, out = fixtures / "reference" / "dpo_trl", fixtures / "reference" / "orpo_trl"
    out.mkdir(parents=True, exist_ok=True)
    for name in ["train.jsonl", "valid.jsonl"]:
        shutil.copyfile(source / name, out / name)
    train_records, valid_records = read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")
    assert len(train_records) == 22 and len(valid_records) == 5

    model_dir = fixtures / "models" / "llama"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token is None and tokenizer.bos_token_id is not None
    # AutoTrain's get_tokenizer (trainers/clm/utils.py): pad = eos when the tokenizer has none. ORPOTrainer does not
    # do it itself: its DPODataCollatorWithPadding raises on a None pad_token_id.
    tokenizer.pad_token = tokenizer.eos_token
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def prompt_length(record):  # BOS + the prompt alone, as tokenize_row counts it before cutting the completions
        return 1 + len(tokenizer(record["prompt"], add_special_tokens=False)["input_ids"])

    dropped = [i for i, r in enumerate(train_records) if prompt_length(r) >= MAX_LENGTH]
    assert dropped == [7], dropped
    assert all(prompt_length(r) < MAX_LENGTH for r in valid_records)
    kept_index = [i for i in range(len(train_records)) if i not in dropped]
    train_dataset = Dataset.from_list([dict(train_records[i], index=i) for i in kept_index])
    valid_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(valid_records)])

    settings = {"beta": 0.1, "max_length": MAX_LENGTH, "max_prompt_length": None, "max_completion_length": None,
                "lr": 2e-3, "batch_size": 2, "eval_batch_size": 2, "gradient_accumulation": 2, "epochs": EPOCHS,
                "scheduler": "linear", "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5,
                "optimizer": "adamw_torch", "seed": 42, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                "target_modules": TARGETS, "reference": "none (ORPO)"}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = ORPOConfig(output_dir=str(out / "hf-run"), beta=settings["beta"], max_length=MAX_LENGTH,
                      max_completion_length=None, learning_rate=settings["lr"], per_device_train_batch_size=2,
                      per_device_eval_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=EPOCHS,
                      lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=0.5,
                      optim="adamw_torch", seed=42, logging_steps=1, eval_strategy="epoch", save_strategy="no",
                      report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, bf16=False,
                      fp16=False, gradient_checkpointing=False, dataset_num_proc=None, remove_unused_columns=False)
    lrs = LearningRates()
    trainer = RecordingTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=valid_dataset,
                               processing_class=tokenizer, peft_config=lora_config(settings), callbacks=[lrs])
    peft_model = trainer.model
    assert_dropout_off(peft_model)
    assert list(peft_model.peft_config) == ["default"]
    pad_id = trainer.data_collator.pad_token_id
    assert pad_id == eos and trainer.padding_value == eos

    draw_lora_b(peft_model)
    save_adapter(peft_model, out / "initial")

    # TRL on the dropped record: the whole prompt kept, an empty completion, and a NaN loss for a batch holding it
    dropped_rows = [trainer.tokenize_row(dict(train_records[i])) for i in dropped]
    for row in dropped_rows:
        for side in ["chosen", "rejected"]:
            assert len(row[f"{side}_input_ids"]) > MAX_LENGTH and set(row[f"{side}_labels"]) == {-100}
    with torch.no_grad():
        rows = dropped_rows + [trainer.tokenize_row(dict(train_records[0]))]  # with a normal pair
        batch = trainer._prepare_inputs(trainer.data_collator(rows))
        loss, metrics = trainer.get_batch_loss_metrics(peft_model, batch)
    assert math.isnan(loss.item()) and math.isnan(metrics["logps/chosen"]) and math.isfinite(metrics["nll_loss"])

    train_kept = [tokens(r) for r in trainer.train_dataset]
    valid_kept = [tokens(r) for r in trainer.eval_dataset]
    assert list(trainer.train_dataset["index"]) == kept_index and list(trainer.eval_dataset["index"]) == [0, 1, 2, 3, 4]
    for r in train_kept + valid_kept:
        assert r["prompt_input_ids"][0] == bos
        for side in ["chosen", "rejected"]:
            ids, labels = r[f"{side}_input_ids"], r[f"{side}_labels"]
            assert len(ids) == len(labels) <= MAX_LENGTH and ids[0] == bos
            start = sum(x == -100 for x in labels)  # the prompt part, masked, then the completion
            assert labels[:start] == [-100] * start and labels[start:] == ids[start:] and start < len(ids)
            assert ids[-1] == eos or len(ids) == MAX_LENGTH
    (out / "tokens.json").write_text(json.dumps(
        {"train": train_kept, "valid": valid_kept, "dropped": dropped,
         "dropped_tokens": [dict(tokens(row), index=i) for i, row in zip(dropped, dropped_rows)]}))

    trainer.positions = {index: position for position, index in enumerate(kept_index)}
    trainer.train()

    pairs = len(train_kept)
    micro_per_epoch, steps_per_epoch, total = step_counts(pairs, EPOCHS)
    result = step_results(trainer, lrs, pairs, len(valid_kept), EPOCHS, METRICS, grad_norm=True, eval_metrics=True)

    save_adapter(peft_model, out / "final")
    settings.update({"pad_token_id": pad_id, "bos_token_id": bos, "eos_token_id": eos,
                     "eos_token": tokenizer.eos_token, "warmup_steps": args.get_warmup_steps(total), "steps": total,
                     "steps_per_epoch": steps_per_epoch, "micro_batches_per_epoch": micro_per_epoch,
                     "train_pairs": pairs, "valid_pairs": len(valid_kept), "dropped": dropped})
    assert settings["warmup_steps"] == math.ceil(total * 0.1)
    assert total == 12
    (out / "steps.json").write_text(json.dumps(result))
    (out / "settings.json").write_text(json.dumps(settings))


if __name__ == "__main__":
    main()
