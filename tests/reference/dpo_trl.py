#!/usr/bin/env python3
r"""Oracle for the DPO trainer: TRL's DPOTrainer (sigmoid loss, beta 0.1) + PEFT LoRA (r 8, alpha 16, q/k/v/o_proj,
lora_dropout 0.05, which TRL turns off), fp32, CPU, batch 2, accumulation 2 (a short last window when the micro-batches
are odd), clipping on, evaluation each epoch on 5 pairs, keep_start truncation. The reference policy is the base model
with the adapter disabled: the adapter is made by TRL from a peft_config (a PeftModel handed to TRL 1.16 would get a
frozen copy of itself, "ref", as the reference instead), then every lora_B is drawn from normal(0, 0.02) so that the
policy differs from the reference from the first step. Two cases:
  text (reference/dpo_trl/)  the llama fixture, text preference data: 2 epochs of 6 optimizer steps over 21 pairs
                             (22 records, one dropped for a prompt that fills max_length), max_length 40.
  chat (reference/dpo_trl/chat/)  the Qwen2 fixture (no bos token; eos = pad = "<|endoftext|>", id 0), conversational
                             preference data: 1 epoch of 4 optimizer steps (windows 2, 2, 2, 1) over 14 pairs,
                             max_length 64 (4 pairs truncated, one more exactly 64 tokens long), none dropped, the
                             first of the 4 steps at lr 0 (warmup). The fixture has no chat template, so the
                             tokenizer gets CHATML below, which is AutoTrain's ChatML fallback (src/chat_template.cpp
                             kFallbackTemplate, what ChatTemplate::load gives for that folder): no default system
                             message, "<|im_start|>assistant\n" as the generation prompt. Train records have no
                             "prompt": TRL's extract_prompt takes the messages chosen and rejected share (all but the
                             last assistant message; single-turn, system-first and two-exchange conversations);
                             valid records give "prompt" (a list of messages: [system,] user) and one assistant
                             message each as "chosen" / "rejected". TRL tokenizes apply_chat_template(prompt,
                             add_generation_prompt=True), apply_chat_template(prompt + chosen) and (prompt +
                             rejected), tokenize=True: no special tokens added, no eos appended (the completions end
                             with "<|im_end|>\n"), and here the tokenized prompt is always a prefix of the others.
Each case writes, under its folder:
  train.jsonl valid.jsonl    the preference records: text {"prompt", "chosen", "rejected"} strings; chat as above
  tokens.json                per split, the kept records in dataset order as TRL prepared them
                             ({"prompt_ids", "chosen_ids", "rejected_ids"}, the completion starting where the
                             tokenized prompt and prompt+completion diverge; text: BOS on the prompt, "</s>" appended
                             to a completion lacking it; chat: each record also has "prompt_text",
                             "prompt_chosen_text", "prompt_rejected_text", the texts apply_chat_template(tokenize=
                             False) renders for the three, which tokenize without special tokens to prompt_ids,
                             prompt_ids + chosen_ids and prompt_ids + rejected_ids), and "dropped": the jsonl indices
                             TRL filtered out
  initial/ final/            PEFT adapters (save_pretrained; target_modules sorted) before and after training
  steps.json                 per optimizer step: "loss" (the sum over the step's micro-batches of what
                             training_step returns, i.e. the mean of their mean-over-pairs losses, unrounded),
                             "micro_losses" (those mean-over-pairs losses), "lr", "order" (the train positions,
                             in tokens.json order, of each micro-batch's pairs), the DPO metrics TRL logs
                             (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
                             logps/rejected: the unweighted mean over the step's micro-batches of their means over
                             pairs); "eval_loss" per epoch (the mean over the eval pairs of their losses: the eval
                             batches' mean-over-pairs losses weighted by their pairs, 2, 2, 1) and
                             "eval_batch_losses"
  settings.json              the hyperparameters, for the C++ side to use the same (chat: also "chat_template", the
                             template's source)."""
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

MAX_LENGTH = 40  # the text case's
CHAT_MAX_LENGTH = 64
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

# AutoTrain's ChatML fallback for a tokenizer without a chat template, character for character as
# src/chat_template.cpp's kFallbackTemplate (the Qwen2 fixture has none, in tokenizer_config.json or in a
# chat_template.jinja / .json)
CHATML = ("{% for message in messages %}"
          "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Per chat record, content token targets: (system or 0 for none, earlier (user, assistant) exchanges, last user,
# chosen, rejected). Message overheads in tokens: user 7, system 9, assistant 10, generation prompt 8.
CHAT_TRAIN = [(0, (), 4, 6, 3), (0, (), 10, 40, 12), (6, (), 5, 5, 8), (0, ((3, 4),), 3, 5, 6), (0, (), 2, 2, 1),
              (10, (), 12, 20, 35), (0, ((5, 6),), 4, 12, 3), (4, ((3, 3),), 3, 4, 9), (0, (), 20, 8, 6),
              (0, ((6, 8),), 5, 10, 10), (8, (), 3, 3, 3), (0, (), 6, 16, 18), (0, ((2, 2),), 2, 3, 3),
              (0, (), 30, 10, 4)]
CHAT_VALID = [(0, (), 5, 6, 4), (6, (), 8, 10, 3), (0, (), 3, 20, 25), (4, (), 12, 4, 8), (0, (), 2, 1, 2)]


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


def chatml_tokenizer(model_dir):
    """The Qwen2 fixture's tokenizer (no bos token; eos = pad = "<|endoftext|>", id 0) given CHATML, and the ids of
    "<|im_end|>" and "\n"."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.chat_template is None  # else the C++ side would render that one, not CHATML
    assert tokenizer.bos_token is None and tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 0
    assert tokenizer.pad_token == tokenizer.eos_token
    tokenizer.chat_template = CHATML
    im_end, newline = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("Ċ")
    assert im_end == 2 and tokenizer(text="\n", add_special_tokens=False)["input_ids"] == [newline]
    return tokenizer, im_end, newline


def message(role, content):
    return {"role": role, "content": content}


def make_chat_records(specs, rng, words, tokenizer, explicit_prompt):
    """Conversations from CHAT_TRAIN / CHAT_VALID specs: with explicit_prompt, {"prompt": [messages], "chosen":
    [assistant], "rejected": [assistant]}; without, {"chosen": prompt + [assistant], "rejected": prompt +
    [assistant]} (the prompt implicit, as the messages both share)."""
    records = []
    for system_n, exchanges, user_n, chosen_n, rejected_n in specs:
        prompt = [message("system", phrase(rng, words, tokenizer, system_n))] if system_n else []
        for exchange_user_n, exchange_assistant_n in exchanges:
            prompt += [message("user", phrase(rng, words, tokenizer, exchange_user_n)),
                       message("assistant", phrase(rng, words, tokenizer, exchange_assistant_n))]
        prompt.append(message("user", phrase(rng, words, tokenizer, user_n)))
        chosen = [message("assistant", phrase(rng, words, tokenizer, chosen_n))]
        rejected = [message("assistant", phrase(rng, words, tokenizer, rejected_n))]
        assert chosen != rejected
        if explicit_prompt:
            records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        else:
            records.append({"chosen": prompt + chosen, "rejected": prompt + rejected})
    return records


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def close(a, b, rel):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


class Recording:
    """Mixed into a TRL trainer (listed before it): keeps every train micro-batch's loss unrounded (training_step's
    value and compute_loss's raw one), its metrics (micro_metrics(): the last logged value of each of self.metrics),
    which train pairs it held (positions_of(inputs)), and every eval batch's loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.micro = []  # (global_step, training_step value, raw loss, window size, positions, {metric: value})
        self.eval_batch_losses = []
        self._raw = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        assert num_items_in_batch is None  # the collator gives no "labels", so the Trainer counts no items
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model.training:
            self._raw = result.item()
        return result

    def micro_metrics(self):
        return {name: self._metrics["train"][name][-1] for name in self.metrics}

    def training_step(self, model, inputs, num_items_in_batch=None):
        positions = self.positions_of(inputs)
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.micro.append((self.state.global_step, loss.item(), self._raw, self.current_gradient_accumulation_steps,
                           positions, self.micro_metrics()))
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        self.eval_batch_losses.append(loss.item())
        return loss, logits, labels


class RecordingTrainer(Recording, DPOTrainer):
    """Records (Recording) the DPO metrics TRL logs, each pair found by its collated prompt+chosen row in lookup."""
    metrics = METRICS

    def __init__(self, *args, lookup=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookup = lookup

    def positions_of(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        return [self.lookup[tuple(ids[i][mask[i] == 1].tolist())] for i in range(ids.shape[0] // 2)]


class LearningRates(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def save_adapter(peft_model, folder):
    """save_pretrained, then target_modules sorted in adapter_config.json: PEFT keeps them as a set and writes
    list(set), whose order follows the interpreter's string hash seed, so differs from run to run."""
    peft_model.save_pretrained(folder)
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))  # as PEFT writes it


def lora_config(settings, task_type="CAUSAL_LM"):
    """PEFT's LoraConfig from an oracle's settings, with AutoTrain's lora_dropout: TRL's disable_dropout (default True)
    sets every dropout's p to 0, PEFT's included (assert_dropout_off checks it)."""
    return LoraConfig(r=settings["lora_r"], lora_alpha=settings["lora_alpha"], lora_dropout=settings["lora_dropout"],
                      target_modules=settings["target_modules"], task_type=task_type)


def assert_dropout_off(peft_model):
    dropouts = [m.p for m in peft_model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(p == 0 for p in dropouts), "TRL left a dropout on"


def draw_lora_b(peft_model):
    """Every lora_B from normal(0, 0.02) (one generator, seed 5, in parameter order), so that the adapter changes the
    model from the first step on."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02, generator=generator)


def twos(n):
    """The sizes of n things taken two at a time, the last one short (batch 2, accumulation 2)."""
    return [2] * (n // 2) + [1] * (n % 2)


def step_counts(pairs, epochs):
    """(micro-batches per epoch, optimizer steps per epoch, steps in all) for pairs train pairs, batch 2,
    accumulation 2."""
    micro_per_epoch = math.ceil(pairs / 2)
    steps_per_epoch = math.ceil(micro_per_epoch / 2)
    return micro_per_epoch, steps_per_epoch, steps_per_epoch * epochs


def step_results(trainer, lrs, pairs, valid_pairs, epochs, metrics, grad_norm=False, eval_metrics=False):
    """steps.json from a Recording trainer that trained epochs epochs on pairs train pairs (lrs its LearningRates),
    evaluating each epoch on valid_pairs pairs: per step "loss", "micro_losses", "lr", "order", ("grad_norm" with
    grad_norm), the logged metrics; per epoch "eval_loss", "eval_batch_losses" (and the logged eval_ metrics with
    eval_metrics). Checks the micro-batches against the schedule, the sampler's order and the trainer's log."""
    micro_per_epoch, _, total = step_counts(pairs, epochs)
    steps = {}
    for step, loss, raw, window, positions, values in trainer.micro:
        assert close(loss, raw / window, 1e-6), (loss, raw, window)  # Trainer divides by the window's micro-batches
        steps.setdefault(step, []).append((loss, raw, positions, values))
    order = sorted(steps)
    assert order == list(range(total)), order
    assert [len(steps[s]) for s in order] == twos(micro_per_epoch) * epochs
    assert len(trainer.micro) == micro_per_epoch * epochs and len(lrs.lrs) == total, (len(trainer.micro), len(lrs.lrs))
    micro_positions = [m[4] for m in trainer.micro]
    assert [len(p) for p in micro_positions] == twos(pairs) * epochs
    for epoch in range(epochs):  # accelerate's SeedableRandomSampler: randperm(n) from a generator seeded seed + epoch
        seen = [p for ps in micro_positions[micro_per_epoch * epoch:micro_per_epoch * (epoch + 1)] for p in ps]
        expected = torch.randperm(pairs, generator=torch.Generator().manual_seed(42 + epoch)).tolist()
        assert seen == expected, (epoch, seen, expected)

    history = [h for h in trainer.state.log_history if "loss" in h and metrics[0] in h]
    assert len(history) == total, len(history)
    result = {"loss": [sum(m[0] for m in steps[s]) for s in order],
              "micro_losses": [[m[1] for m in steps[s]] for s in order],
              "lr": lrs.lrs,
              "order": [[m[2] for m in steps[s]] for s in order]}
    if grad_norm:
        result["grad_norm"] = [h["grad_norm"] for h in history]
    for name in metrics:
        result[name] = [h[name] for h in history]
        for s, h in zip(order, history):  # the trainer logs the plain mean of the step's micro-batch values
            values = [m[3][name] for m in steps[s]]
            assert close(h[name], sum(values) / len(values), 1e-6), (name, s)
    for h, loss in zip(history, result["loss"]):  # the logged loss is our step loss, rounded
        assert close(h["loss"], loss, 1e-4), (h["loss"], loss)
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    sizes = twos(valid_pairs)  # the eval batches' pairs
    n = len(sizes)
    assert len(evals) == epochs and len(trainer.eval_batch_losses) == n * epochs, \
        (len(evals), len(trainer.eval_batch_losses))
    result["eval_loss"] = [h["eval_loss"] for h in evals]
    result["eval_batch_losses"] = [trainer.eval_batch_losses[n * e:n * (e + 1)] for e in range(epochs)]
    # Trainer repeats each batch's loss eval_batch_size times and accelerate's gather_for_metrics cuts the last batch
    # to the dataset's remainder, so eval_loss weighs each batch by its pairs: the mean over the eval pairs' losses
    for value, batches in zip(result["eval_loss"], result["eval_batch_losses"]):
        weighted = sum(size * loss for size, loss in zip(sizes, batches)) / valid_pairs
        assert close(value, weighted, 1e-6), (value, batches)
    if eval_metrics:
        for name in metrics:
            result["eval_" + name] = [h["eval_" + name] for h in evals]
    assert all(math.isfinite(x) for x in result["loss"] + result["eval_loss"])
    return result


def prepared(dataset):
    return [{"prompt_ids": r["prompt_ids"], "chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]}
            for r in dataset]


def run_dpo(out, model_dir, tokenizer, max_length, epochs, check_prepared, extra_settings=None):
    """Trains on out/train.jsonl, evaluating on out/valid.jsonl, and writes tokens.json (the prepared records, plus
    what check_prepared(trainer, train_records, valid_records, train_kept, valid_kept, train_index, valid_index,
    dropped) adds to them after checking them), initial/, final/, steps.json and settings.json (extra_settings
    last)."""
    train_records, valid_records = read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")
    # The index column survives TRL's map/filter (so the dropped records can be named) and is removed by the Trainer
    # before collation (it is no signature column).
    train_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(train_records)])
    valid_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(valid_records)])

    settings = {"beta": 0.1, "loss_type": "sigmoid", "max_length": max_length, "truncation_mode": "keep_start",
                "lr": 2e-3, "batch_size": 2, "eval_batch_size": 2, "gradient_accumulation": 2, "epochs": epochs,
                "scheduler": "linear", "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5,
                "optimizer": "adamw_torch", "seed": 42, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                "target_modules": TARGETS, "reference": "base model (adapter disabled)"}

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = DPOConfig(output_dir=str(out / "hf-run"), beta=settings["beta"], max_length=max_length,
                     truncation_mode="keep_start", learning_rate=settings["lr"], per_device_train_batch_size=2,
                     per_device_eval_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=epochs,
                     lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=0.5,
                     optim="adamw_torch", seed=42, logging_steps=1, eval_strategy="epoch", save_strategy="no",
                     report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
                     precompute_ref_log_probs=False, bf16=False, fp16=False, gradient_checkpointing=False,
                     dataset_num_proc=None, padding_free=False, pad_to_multiple_of=None)
    lrs = LearningRates()
    trainer = RecordingTrainer(model=model, ref_model=None, args=args, train_dataset=train_dataset,
                               eval_dataset=valid_dataset, processing_class=tokenizer,
                               peft_config=lora_config(settings), callbacks=[lrs])
    peft_model = trainer.model
    assert_dropout_off(peft_model)
    assert trainer.ref_model is None and list(peft_model.peft_config) == ["default"]
    pad_id = trainer.data_collator.pad_token_id
    assert pad_id == tokenizer.eos_token_id

    draw_lora_b(peft_model)  # so the policy differs from the (adapter-disabled) reference from step 1
    save_adapter(peft_model, out / "initial")

    train_kept, valid_kept = prepared(trainer.train_dataset), prepared(trainer.eval_dataset)
    train_index, valid_index = list(trainer.train_dataset["index"]), list(trainer.eval_dataset["index"])
    dropped = sorted(set(range(len(train_records))) - set(train_index))
    assert list(valid_index) == list(range(len(valid_records)))
    train_out, valid_out = check_prepared(trainer, train_records, valid_records, train_kept, valid_kept, train_index,
                                          valid_index, dropped)
    (out / "tokens.json").write_text(json.dumps({"train": train_out, "valid": valid_out, "dropped": dropped}))

    # What the collator puts in a row (prompt+chosen, keep_start truncated) -> its train position
    trainer.lookup = {}
    for position, r in enumerate(train_kept):
        key = tuple((r["prompt_ids"] + r["chosen_ids"])[:max_length])
        assert key not in trainer.lookup
        trainer.lookup[key] = position

    trainer.train()

    pairs = len(train_kept)
    micro_per_epoch, steps_per_epoch, total = step_counts(pairs, epochs)
    assert len(valid_kept) == 5
    result = step_results(trainer, lrs, pairs, len(valid_kept), epochs, METRICS)

    save_adapter(peft_model, out / "final")
    settings.update({"pad_token_id": pad_id, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "eos_token": tokenizer.eos_token,
                     "warmup_steps": args.get_warmup_steps(total), "steps": total, "steps_per_epoch": steps_per_epoch,
                     "micro_batches_per_epoch": micro_per_epoch, "train_pairs": pairs,
                     "valid_pairs": len(valid_kept)})
    settings.update(extra_settings or {})
    assert settings["warmup_steps"] == math.ceil(total * 0.1)
    (out / "steps.json").write_text(json.dumps(result))
    (out / "settings.json").write_text(json.dumps(settings))
    return result


def text_case(fixtures, words):
    out = fixtures / "reference" / "dpo_trl"
    out.mkdir(parents=True, exist_ok=True)
    model_dir = fixtures / "models" / "llama"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token is None
    rng = random.Random(20240611)
    write_jsonl(out / "train.jsonl", make_records(TRAIN, rng, words, tokenizer))
    write_jsonl(out / "valid.jsonl", make_records(VALID, rng, words, tokenizer))

    def check(trainer, train_records, valid_records, train_kept, valid_kept, train_index, valid_index, dropped):
        assert dropped == [i for i, s in enumerate(TRAIN) if s[3] == "long"], dropped
        for i, r in enumerate(train_records):  # the long prompt is the only one filling max_length
            assert (len(tokenizer(text=r["prompt"])["input_ids"]) >= MAX_LENGTH) == (i in dropped), i
        assert len(train_kept) == 21
        for index, record in zip(train_index + valid_index, train_kept + valid_kept):
            assert record["prompt_ids"][0] == tokenizer.bos_token_id
            assert record["chosen_ids"][-1] == tokenizer.eos_token_id and \
                record["rejected_ids"][-1] == tokenizer.eos_token_id
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
        return train_kept, valid_kept

    result = run_dpo(out, model_dir, tokenizer, MAX_LENGTH, 2, check)
    assert len(result["loss"]) == 12


def chat_case(fixtures, words):
    out = fixtures / "reference" / "dpo_trl" / "chat"
    out.mkdir(parents=True, exist_ok=True)
    model_dir = fixtures / "models" / "qwen2"
    tokenizer, im_end, newline = chatml_tokenizer(model_dir)
    rng = random.Random(20240612)
    write_jsonl(out / "train.jsonl", make_chat_records(CHAT_TRAIN, rng, words, tokenizer, explicit_prompt=False))
    write_jsonl(out / "valid.jsonl", make_chat_records(CHAT_VALID, rng, words, tokenizer, explicit_prompt=True))

    def encode(text):
        return tokenizer(text=text, add_special_tokens=False)["input_ids"]

    def check(trainer, train_records, valid_records, train_kept, valid_kept, train_index, valid_index, dropped):
        assert dropped == [] and len(train_kept) == len(CHAT_TRAIN) == 14, dropped
        contents = [m["content"] for r in train_records + valid_records for key in r for m in r[key]]
        assert any(c.isascii() for c in contents) and sum(not c.isascii() for c in contents) >= 10
        outputs = []
        for dataset, records, kept in [(trainer.train_dataset, train_records, train_kept),
                                       (trainer.eval_dataset, valid_records, valid_kept)]:
            split = []
            for row, record, ids in zip(dataset, records, kept):
                # TRL's implicit prompt: the messages chosen and rejected share, here all but the last
                expected = record if "prompt" in record else {"prompt": record["chosen"][:-1],
                                                              "chosen": record["chosen"][-1:],
                                                              "rejected": record["rejected"][-1:]}
                assert {k: row[k] for k in ["prompt", "chosen", "rejected"]} == expected, row
                # What TRL's tokenize_fn hands _tokenize (tools=None from the absent "tools" column)
                texts = {"prompt_text": tokenizer.apply_chat_template(row["prompt"], tools=None, tokenize=False,
                                                                      add_generation_prompt=True),
                         "prompt_chosen_text": tokenizer.apply_chat_template(row["prompt"] + row["chosen"],
                                                                             tools=None, tokenize=False),
                         "prompt_rejected_text": tokenizer.apply_chat_template(row["prompt"] + row["rejected"],
                                                                               tools=None, tokenize=False)}
                assert texts["prompt_text"].endswith("<|im_start|>assistant\n")
                for key in ["prompt_chosen_text", "prompt_rejected_text"]:
                    assert texts[key].startswith(texts["prompt_text"]) and texts[key].endswith("<|im_end|>\n")
                # The tokenized prompt is a prefix here, no eos is appended, no special token added
                assert encode(texts["prompt_text"]) == ids["prompt_ids"]
                assert encode(texts["prompt_chosen_text"]) == ids["prompt_ids"] + ids["chosen_ids"]
                assert encode(texts["prompt_rejected_text"]) == ids["prompt_ids"] + ids["rejected_ids"]
                for key in ["chosen_ids", "rejected_ids"]:
                    assert ids[key][-2:] == [im_end, newline] and tokenizer.eos_token_id not in ids[key]
                assert len(ids["prompt_ids"]) < CHAT_MAX_LENGTH
                split.append({**ids, **texts})
            outputs.append(split)
        lengths = [len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in train_kept]
        fitting = sum(n <= CHAT_MAX_LENGTH - 10 for n in lengths)
        assert sum(n > CHAT_MAX_LENGTH for n in lengths) >= 4 and fitting >= 4, lengths
        return outputs

    result = run_dpo(out, model_dir, tokenizer, CHAT_MAX_LENGTH, 1, check, {"chat_template": CHATML})
    assert len(result["loss"]) == 4


def run_cases(*cases):
    """An oracle's main: each case(fixtures, words), fixtures from --fixtures, words from
    tests/data/multilingual.txt."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    # One thread: the same numbers (checked against two) and much faster on small shared machines, where torch's
    # thread pool makes each of these tiny matmuls take milliseconds
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[2]
    words = load_words(root / "tests" / "data" / "multilingual.txt")
    for case in cases:
        case(fixtures, words)


def main():
    run_cases(text_case, chat_case)


if __name__ == "__main__":
    main()
