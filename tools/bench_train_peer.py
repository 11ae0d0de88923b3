#!/usr/bin/env python3
"""The Python peer of `autotrain train` for tools/bench_train_cpu.sh: the same training_params.json run
with transformers' Trainer + PEFT (+ bitsandbytes NF4 for quantization int4), data prepared as
AutoTrain's default trainer does (eos appended as text, tokenize, concatenate, cut into block_size).
With "trainer": "dpo", TRL's DPOTrainer instead (sigmoid loss, the base with the adapter disabled as the reference,
max_length block_size kept from the start, as our DPO), on the prompt / chosen / rejected columns; its tokens are
those of each pair's two sequences as the collator cuts them, as ours counts them. With "trainer": "orpo", TRL's
ORPOTrainer (trl.experimental.orpo) on the same columns, no reference model, its tokens counted the same way. With
"trainer": "reward", TRL's RewardTrainer on AutoModelForSequenceClassification (num_labels 1, PEFT task SEQ_CLS: the
score head trained in full), the prompt column prepended, pairs longer than block_size dropped, as AutoTrain runs it.
The preference trainers run in the config's precision (TRL would default to bf16 autocast, on a CPU too).
Prints one JSON line: {"tokens": ..., "train_seconds": ..., "tokens_per_second": ...}."""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer, TrainingArguments


def blocks_of(config, tokenizer, max_blocks=None):
    """AutoTrain's default packing: eos appended to each text as text, tokenized (in batches of 1000
    texts), concatenated, cut into block_size blocks, the remainder dropped. With max_blocks, reading
    stops once that many blocks are there (the benchmark needs only a few)."""
    path = os.path.join(config["data_path"], config.get("train_split", "train") + ".jsonl")
    eos = tokenizer.eos_token if config.get("add_eos_token", True) else ""
    block = config["block_size"]
    ids, texts = [], []

    def tokenize_texts():
        if not texts:
            return
        for row in tokenizer(texts)["input_ids"]:
            ids.extend(row)
        texts.clear()

    with open(path, encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)[config.get("text_column", "text")] + eos)
            if len(texts) == 1000:
                tokenize_texts()
                if max_blocks is not None and len(ids) >= max_blocks * block:
                    break
    tokenize_texts()
    count = len(ids) // block
    if max_blocks is not None:
        count = min(count, max_blocks)
    return torch.tensor(ids[: count * block]).view(count, block)


class Blocks(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return self.ids.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def preference_pairs(config):
    """The train split's records as TRL's prompt / chosen / rejected columns, in a datasets.Dataset."""
    from datasets import Dataset

    path = os.path.join(config["data_path"], config.get("train_split", "train") + ".jsonl")
    columns = {"prompt": config["prompt_text_column"], "chosen": config["text_column"],
               "rejected": config["rejected_text_column"]}
    with open(path, encoding="utf-8") as f:
        records = [{key: json.loads(line)[column] for key, column in columns.items()} for line in f if line.strip()]
    return Dataset.from_list(records)


def preference_arguments(config, gradient_checkpointing):
    """The keyword arguments DPOConfig, ORPOConfig and RewardConfig share for the run (the first two add beta)."""
    precision = config.get("mixed_precision") or "none"
    return dict(output_dir="/tmp/bench_train_peer", max_length=config["block_size"],
                per_device_train_batch_size=config["batch_size"],
                gradient_accumulation_steps=config["gradient_accumulation"], num_train_epochs=config["epochs"],
                learning_rate=config["lr"], lr_scheduler_type=config["scheduler"],
                warmup_steps=config["warmup_ratio"], optim="adamw_torch", seed=config.get("seed", 42),
                logging_steps=1000, save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
                disable_tqdm=True, gradient_checkpointing=gradient_checkpointing,
                # TRL's configs default bf16 to True (mixed precision even on a CPU); ours follows the config
                bf16=precision == "bf16", fp16=precision == "fp16")


def timed_train(trainer):
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def train_dpo(config, model, tokenizer, lora, gradient_checkpointing):
    """TRL's DPOTrainer over the config's preference pairs; (tokens, seconds) of trainer.train()."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**preference_arguments(config, gradient_checkpointing), beta=config.get("dpo_beta", 0.1),
                     truncation_mode="keep_start", precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=preference_pairs(config),
                         processing_class=tokenizer, peft_config=lora)
    max_length = config["block_size"]
    tokens = config["epochs"] * sum(min(len(r["prompt_ids"]) + len(r[f"{side}_ids"]), max_length)
                                    for r in trainer.train_dataset for side in ("chosen", "rejected"))
    return tokens, timed_train(trainer)


def train_orpo(config, model, tokenizer, lora, gradient_checkpointing):
    """TRL's ORPOTrainer over the config's preference pairs; (tokens, seconds) of trainer.train()."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**preference_arguments(config, gradient_checkpointing), beta=config.get("dpo_beta", 0.1),
                      max_completion_length=None)
    if tokenizer.pad_token is None:  # as AutoTrain's get_tokenizer (DPOTrainer falls back to eos by itself)
        tokenizer.pad_token = tokenizer.eos_token
    trainer = ORPOTrainer(model=model, args=args, train_dataset=preference_pairs(config), processing_class=tokenizer,
                          peft_config=lora)
    max_length = config["block_size"]
    tokens = config["epochs"] * sum(min(len(r[f"{side}_input_ids"]), max_length)
                                    for r in trainer.train_dataset for side in ("chosen", "rejected"))
    return tokens, timed_train(trainer)


def train_reward(config, model, tokenizer, lora, gradient_checkpointing):
    """TRL's RewardTrainer over the config's preference pairs; (tokens, seconds) of trainer.train()."""
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**preference_arguments(config, gradient_checkpointing))
    lora.task_type = "SEQ_CLS"  # as AutoTrain's LoraConfig: PEFT then trains and saves the score head
    trainer = RewardTrainer(model=model, args=args, train_dataset=preference_pairs(config), processing_class=tokenizer,
                            peft_config=lora)
    # TRL casts a quantized model's trainable parameters to bf16 (QLoRA's recipe), and the score head in bf16 then
    # meets fp32 hidden states outside autocast; back to fp32, the computation ours makes in an fp32 run.
    for parameter in trainer.model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    tokens = config["epochs"] * sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
    return tokens, timed_train(trainer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=0)
    config = json.load(open(parser.parse_args().config))
    threads = parser.parse_args().threads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.get("seed", 42))
    tokenizer = AutoTokenizer.from_pretrained(config["model"])
    quantization = config.get("quantization")
    kwargs = {"dtype": torch.float32}
    if quantization == "int4":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.float32)
    if config.get("trainer") == "reward":  # the base with a new score head, as AutoTrain loads it
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(config["model"], num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(config["model"], **kwargs)
    targets = [t.strip() for t in config["target_modules"].split(",")]
    lora = LoraConfig(r=config["lora_r"], lora_alpha=config["lora_alpha"], lora_dropout=config["lora_dropout"],
                      target_modules=targets, task_type="CAUSAL_LM")
    gradient_checkpointing = not config.get("disable_gradient_checkpointing", False)
    if config.get("trainer") in ("dpo", "orpo", "reward"):  # TRL makes the adapter (DPO would copy a given one)
        train_preference = {"dpo": train_dpo, "orpo": train_orpo, "reward": train_reward}[config["trainer"]]
        tokens, seconds = train_preference(config, model, tokenizer, lora, gradient_checkpointing)
        print(json.dumps({"tokens": tokens, "train_seconds": seconds, "tokens_per_second": tokens / seconds}))
        return
    model = get_peft_model(model, lora)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    ids = blocks_of(config, tokenizer)
    args = TrainingArguments(output_dir="/tmp/bench_train_peer", per_device_train_batch_size=config["batch_size"],
                             gradient_accumulation_steps=config["gradient_accumulation"],
                             num_train_epochs=config["epochs"], learning_rate=config["lr"],
                             lr_scheduler_type=config["scheduler"], warmup_steps=config["warmup_ratio"],
                             optim="adamw_torch", seed=config.get("seed", 42), logging_steps=1000,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             gradient_checkpointing=gradient_checkpointing)
    trainer = Trainer(model=model, args=args, train_dataset=Blocks(ids))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = ids.numel() * config["epochs"]
    print(json.dumps({"tokens": tokens, "train_seconds": seconds, "tokens_per_second": tokens / seconds}))


if __name__ == "__main__":
    sys.exit(main())
