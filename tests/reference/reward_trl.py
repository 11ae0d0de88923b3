#!/usr/bin/env python3
r"""Oracle for the reward trainer (AutoTrain's trainer "reward"), two cases. The text case (reference/reward_trl/):
TRL 1.16's RewardTrainer + PEFT LoRA (task_type SEQ_CLS; r 8, alpha 16, q/k/v/o_proj, lora_dropout 0.05, which TRL
turns off), fp32, CPU, batch 2, accumulation 2 (a short last window: 17 pairs make 9 micro-batches per epoch, windows
2, 2, 2, 2, 1), clipping on, evaluation each epoch on 6 pairs (batches 2, 2, 2). The model is the llama fixture loaded
as AutoModelForSequenceClassification (num_labels 1: the "score" head, Linear(hidden, 1, bias=False), randomly
initialised after torch.manual_seed(0); the causal lm_head is not loaded); PEFT's SEQ_CLS task makes "score" a
trainable modules_to_save module, saved whole in the adapter. The adapter is made by TRL from a peft_config, then
every lora_B is drawn from normal(0, 0.02) (as tests/reference/dpo_trl.py does).

What RewardTrainer does with text preference records {"prompt", "chosen", "rejected"} (reward_trainer.py
_prepare_dataset): the tokenizer has no pad token, so pad = eos = "</s>" and the model config's pad_token_id = eos id;
the eos text "</s>" is appended to chosen and rejected unless they already end with it (a plain endswith on the text);
then chosen_ids = tokenizer(prompt + chosen) and rejected_ids = tokenizer(prompt + rejected), with special tokens, i.e.
BOS first (the prompt is not tokenized on its own: a word the prompt cuts in two is tokenized whole); no truncation: a
pair where either side has more than max_length (40) tokens is dropped. The collator (DataCollatorForPreference) stacks
the 2 chosen rows then the 2 rejected rows, right-padded with the pad id (eos) and an attention mask. The model pools
its logits at the rightmost token that is not the pad id, which here is the token before the final "</s>" (the eos the
text ends with is never the pooled token; the attention mask plays no part in the pooling). Train record 13's
rejected holds the word "4</s>" mid-text: the tokenizer makes that "</s>" the eos token too (id 2 = the pad id,
attention mask 1), so the pooled position is the rightmost non-pad token, not the one before the first pad id. Loss per
micro-batch: the mean over its pairs of -logsigmoid(r_chosen - r_rejected) (no margin column,
center_rewards_coefficient None).

Writes under reference/reward_trl/:
  train.jsonl valid.jsonl    the preference records {"prompt", "chosen", "rejected"} (21 train records, 4 of them
                             dropped for length: one only for its rejected, one only for its chosen, two for both; one
                             kept rejected exactly 40 tokens; 5 chosen/rejected already ending with "</s>"; 6 valid
                             records, none dropped)
  tokens.json                per split, the kept pairs in dataset order: {"chosen_ids", "rejected_ids" (as TRL
                             prepared them), "chosen_reward", "rejected_reward" (the initial model's rewards, i.e.
                             with initial/ applied, eval mode, each sequence alone and unpadded, fp32 values),
                             "chosen_pool", "rejected_pool" (the position the reward was pooled at: len(ids) - 2)};
                             "dropped": the train jsonl indices TRL filtered out
  initial/ final/            PEFT adapters (save_pretrained; target_modules sorted) before and after training: the
                             LoRA tensors ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", ...)
                             and the score head ("base_model.model.score.weight", shape (1, hidden))
  steps.json                 per optimizer step: "loss" (the sum over the step's micro-batches of what training_step
                             returns, i.e. the mean of their mean-over-pairs losses, unrounded), "micro_losses"
                             (compute_loss's values), "lr", "order" (the train positions, in tokens.json order, of
                             each micro-batch's pairs), "grad_norm", and the metrics RewardTrainer logs (accuracy,
                             margin, min_reward, mean_reward, max_reward: the unweighted mean over the step's
                             micro-batches of their values; min/mean/max over the micro-batch's 2n rewards, accuracy
                             and margin over its n pairs); per epoch "eval_loss" (the mean of the 3 equal eval batches'
                             losses), "eval_batch_losses", and "eval_accuracy", "eval_margin", "eval_min_reward",
                             "eval_mean_reward", "eval_max_reward" (the unweighted mean over the eval batches)
  settings.json              the hyperparameters, pad / bos / eos ids, step counts, "score_tensor" (the score head's
                             name in adapter_model.safetensors).

The chat case (reference/reward_trl/chat/, no training) models AutoTrain's trainer "reward" with chat_template
"tokenizer" on the Qwen2 fixture (no bos token; eos = pad = "<|endoftext|>", id 0; the model config's pad_token_id set
to 0 as TRL sets it). The fixture has no chat template, so the tokenizer gets tests/reference/dpo_trl.py's CHATML,
AutoTrain's ChatML fallback. AutoTrain (clm/utils.py apply_chat_template, trainer "reward") replaces each record's
"chosen" and "rejected" conversations (lists of {"role", "content"} messages: [system,] user/assistant exchanges,
ending with the assistant message, the two sharing all but that last message) by apply_chat_template(messages,
tokenize=False): no generation prompt, the text ending with "<|im_end|>\n". TRL 1.16's RewardTrainer then sees plain
text: it appends "<|endoftext|>" (the texts never end with it), tokenizes with special tokens (none are added for this
tokenizer; the appended text becomes eos id 0) and drops a pair with a side over max_length (64) tokens; no
truncation. The score is pooled at the rightmost non-pad token, the "\n" after the last "<|im_end|>" (len(ids) - 2).
Train records are such full conversations {"chosen": [...], "rejected": [...]}. Valid records use our C++ side's
extension, a "prompt" column: {"prompt": [messages], "chosen": [one assistant message], "rejected": [one assistant
message]}, the prompt prepended to both before rendering, i.e. apply_chat_template(prompt + chosen, tokenize=False):
the same as AutoTrain's full-conversation form of the record (and, CHATML rendering message by message, the same as
the prompt's rendering followed by the last message's). The adapter is made as in the text case (LoRA on q/k/v/o_proj,
r 8, alpha 16, SEQ_CLS, score head drawn after torch.manual_seed(0), lora_B from normal(0, 0.02), generator seed 5).
Writes under reference/reward_trl/chat/:
  train.jsonl valid.jsonl    10 train records (multi-turn, with and without a system message, non-ASCII content;
                             2 dropped for length: 3 only for its rejected, 6 only for its chosen; one kept rejected
                             exactly 64 tokens), 5 valid records in the prompt form (none dropped)
  tokens.json                per split, the kept pairs in dataset order: {"chosen_text", "rejected_text" (the
                             strings TRL tokenized: the rendered conversation + "<|endoftext|>"), "chosen_ids",
                             "rejected_ids" (tokenizer(text)["input_ids"], ending [<|im_end|>, "\n", eos]),
                             "chosen_reward", "rejected_reward" (initial/ applied, eval mode, each sequence alone and
                             unpadded, fp32)}; "dropped": the train jsonl indices TRL filtered out
  initial/                   the PEFT adapter (LoRA tensors and "base_model.model.score.weight")
  settings.json              max_length, pad / bos / eos ids, eos_token, chat_template (the CHATML source),
                             target_modules, lora_r, lora_alpha, lora_dropout, score_tensor, pair counts, dropped."""
import json
import math
import os
import random

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from datasets import Dataset
from peft.utils import ModulesToSaveWrapper
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

# this folder is on sys.path when run as a script
from dpo_trl import (CHATML, LearningRates, Recording, assert_dropout_off, chatml_tokenizer, close, draw_lora_b,
                     lora_config, make_chat_records, make_records, read_jsonl, run_cases, save_adapter, step_counts,
                     step_results, write_jsonl)

MAX_LENGTH = 40
EPOCHS = 2
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# What RewardTrainer.compute_loss logs per micro-batch (besides num_tokens)
METRICS = ["accuracy", "margin", "min_reward", "mean_reward", "max_reward"]
# Per record: (prompt tokens, chosen tokens, rejected tokens, kind), as dpo_trl.make_records takes them. With the seed
# below, BOS + prompt + completion + "</s>" comes to (chosen, rejected) tokens: train 5 (35, 40) is kept at exactly
# max_length; 7 (50, 41) and 18 (46, 48) are dropped for both, 10 (32, 41) only for its rejected, 14 (42, 13) only for
# its chosen. Kinds "eos_c" / "eos_r" / "eos_cr": the chosen / rejected / both already end with "</s>"; "mid": the
# prompt ends mid-word (nothing special for TRL here, which tokenizes prompt + completion as one text).
TRAIN = [(8, 6, 4, ""), (4, 24, 18, ""), (14, 4, 6, "eos_c"), (7, 8, 5, "mid"), (1, 1, 1, ""), (20, 12, 18, ""),
         (6, 9, 9, "eos_cr"), (30, 14, 4, ""), (5, 1, 4, "eos_r"), (2, 3, 2, ""), (16, 12, 20, ""), (5, 10, 2, ""),
         (9, 6, 8, ""), (8, 12, 12, ""), (2, 36, 6, ""), (12, 8, 4, "eos_c"), (4, 15, 6, ""), (10, 4, 10, ""),
         (22, 20, 22, ""), (3, 2, 3, "eos_r"), (3, 2, 5, "")]
VALID = [(6, 5, 7, ""), (12, 20, 9, ""), (3, 4, 4, "eos_c"), (9, 8, 3, "mid"), (18, 10, 15, ""), (4, 3, 12, "")]
SEED = 20240613
DROPPED = [7, 10, 14, 18]

# The chat case. Per record, content token targets as dpo_trl.make_chat_records takes them: (system or 0 for none,
# earlier (user, assistant) exchanges, last user, chosen, rejected). With the seed below, the rendered conversation
# + "<|endoftext|>" comes to (chosen, rejected) tokens: train 3 (36, 71) is dropped only for its rejected, 6 (68, 36)
# only for its chosen, 5 (58, 64) is kept with its rejected exactly max_length; valid at most 63, none dropped.
CHAT_MAX_LENGTH = 64
CHAT_TRAIN = [(0, (), 4, 6, 3), (6, (), 5, 8, 5), (0, ((3, 4),), 3, 5, 6), (0, (), 8, 10, 40), (0, (), 2, 2, 1),
              (2, ((2, 2),), 2, 2, 4), (0, (), 10, 40, 8), (0, ((2, 3),), 2, 5, 2), (8, (), 3, 3, 3),
              (0, (), 12, 22, 14)]
CHAT_VALID = [(0, (), 5, 6, 4), (6, (), 8, 10, 3), (0, ((3, 3),), 3, 8, 5), (4, (), 10, 4, 8), (0, (), 2, 1, 2)]
CHAT_SEED = 20240614
CHAT_DROPPED = [3, 6]


class RecordingTrainer(Recording, RewardTrainer):
    """Records (Recording) the reward metrics, each pair found by its collated chosen row in lookup, and every eval
    batch's metrics."""
    metrics = METRICS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookup = None  # chosen_ids -> (position in the kept train pairs, rejected_ids)
        self.eval_batch_metrics = []

    def positions_of(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert set(inputs) == {"input_ids", "attention_mask"}, list(inputs)
        pairs = ids.shape[0] // 2
        rows = [tuple(ids[i][mask[i] == 1].tolist()) for i in range(2 * pairs)]
        positions = []
        for i in range(pairs):  # chosen rows first, then the rejected rows in the same order
            position, rejected = self.lookup[rows[i]]
            assert rows[pairs + i] == rejected
            positions.append(position)
        pad = self.data_collator.pad_token_id
        assert all((ids[i][mask[i] == 0] == pad).all() for i in range(2 * pairs))  # right padding with the pad id
        return positions

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        result = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        self.eval_batch_metrics.append({name: self._metrics["eval"][name][-1] for name in METRICS})
        return result


def adapted_trainer(trainer_class, model, args, train_dataset, eval_dataset, tokenizer, settings, out, callbacks=None):
    """trainer_class (a RewardTrainer) with the LoRA adapter of settings made by TRL (task SEQ_CLS: PEFT makes "score"
    a trainable modules_to_save module, the base copy frozen), every lora_B drawn (draw_lora_b), the adapter saved to
    out/initial (the LoRA tensors and the score head whole: PEFT drops "modules_to_save.default"). Returns the
    trainer, the saved adapter_config.json, the saved tensors and the score head's name among them."""
    trainer = trainer_class(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                            processing_class=tokenizer, peft_config=lora_config(settings, "SEQ_CLS"),
                            callbacks=callbacks)
    peft_model = trainer.model
    assert_dropout_off(peft_model)
    assert list(peft_model.peft_config) == ["default"]
    # TRL: pad = eos on the tokenizer, and on the model config (where the pooling looks for it)
    pad_id = trainer.data_collator.pad_token_id
    assert pad_id == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert peft_model.config.pad_token_id == model.config.pad_token_id == pad_id
    score = peft_model.base_model.model.score
    assert isinstance(score, ModulesToSaveWrapper), type(score)
    assert score.modules_to_save["default"].weight.requires_grad and not score.original_module.weight.requires_grad
    layers = model.config.num_hidden_layers
    trainable = sorted(n for n, p in peft_model.named_parameters() if p.requires_grad)
    assert len(trainable) == 4 * 2 * layers + 1, trainable
    assert [n for n in trainable if "lora_" not in n] == ["base_model.model.score.modules_to_save.default.weight"]

    draw_lora_b(peft_model)
    save_adapter(peft_model, out / "initial")
    config = json.loads((out / "initial" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"], config
    assert config["target_modules"] == sorted(TARGETS) and config["r"] == 8 and config["lora_alpha"] == 16
    with safe_open(str(out / "initial" / "adapter_model.safetensors"), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    score_names = [k for k in saved if "lora_" not in k]
    assert score_names == ["base_model.model.score.weight"], score_names
    score_tensor = score_names[0]
    head = saved[score_tensor]
    assert tuple(head.shape) == (1, model.config.hidden_size) and head.dtype == torch.float32
    assert torch.equal(head, score.modules_to_save["default"].weight.detach())
    assert torch.equal(head, score.original_module.weight.detach())  # a copy of the loaded head
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in saved
    assert len(saved) == 4 * 2 * layers + 1, sorted(saved)
    return trainer, config, saved, score_tensor


def pooled_index(ids, pad_id):
    """transformers' GenericForSequenceClassification: the rightmost position whose token is not the pad id."""
    return max(i for i, t in enumerate(ids) if t != pad_id)


def initial_rewards(trainer, kept_splits, pools):
    """Adds to each pair of kept_splits (lists of {"chosen_ids", "rejected_ids", ...}) its rewards from trainer.model,
    eval mode, each sequence alone and unpadded: "chosen_reward" and "rejected_reward", pooled at len(ids) - 2 (with
    pools, that position as "chosen_pool", "rejected_pool"); then checks that the collated pairs (padded batches, as
    in training) give the same rewards up to rounding. The model's mode is restored."""
    peft_model, pad_id = trainer.model, trainer.data_collator.pad_token_id
    was_training = peft_model.training
    peft_model.eval()
    with torch.no_grad():
        for kept in kept_splits:
            for r in kept:
                for side in ["chosen", "rejected"]:
                    ids = r[f"{side}_ids"]
                    logits = peft_model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                                                  dtype=torch.long),
                                        use_cache=False).logits
                    assert tuple(logits.shape) == (1, 1)
                    r[f"{side}_reward"] = logits[0, 0].item()
                    pool = pooled_index(ids, pad_id)
                    assert pool == len(ids) - 2
                    if pools:
                        r[f"{side}_pool"] = pool
            for start in range(0, len(kept), 2):
                batch = trainer.data_collator([{k: r[k] for k in ["chosen_ids", "rejected_ids"]}
                                               for r in kept[start:start + 2]])
                logits = peft_model(**batch, use_cache=False).logits.squeeze(-1).tolist()
                expected = [r["chosen_reward"] for r in kept[start:start + 2]] + \
                    [r["rejected_reward"] for r in kept[start:start + 2]]
                assert len(logits) == len(expected) and all(close(a, b, 1e-4) for a, b in zip(logits, expected)), \
                    (logits, expected)
    peft_model.train(was_training)


def text_case(fixtures, words):
    out = fixtures / "reference" / "reward_trl"
    out.mkdir(parents=True, exist_ok=True)
    model_dir = fixtures / "models" / "llama"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token is None and tokenizer.bos_token_id is not None
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rng = random.Random(SEED)
    write_jsonl(out / "train.jsonl", make_records(TRAIN, rng, words, tokenizer))
    write_jsonl(out / "valid.jsonl", make_records(VALID, rng, words, tokenizer))
    train_records, valid_records = read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")
    assert len(train_records) == 21 and len(valid_records) == 6
    # The index column survives TRL's map/filter (so the dropped records can be named) and is removed by the Trainer
    # before collation (it is no signature column)
    train_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(train_records)])
    valid_dataset = Dataset.from_list([dict(r, index=i) for i, r in enumerate(valid_records)])

    settings = {"max_length": MAX_LENGTH, "center_rewards_coefficient": None, "num_labels": 1, "task_type": "SEQ_CLS",
                "lr": 2e-3, "batch_size": 2, "eval_batch_size": 2, "gradient_accumulation": 2, "epochs": EPOCHS,
                "scheduler": "linear", "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5,
                "optimizer": "adamw_torch", "seed": 42, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                "target_modules": TARGETS}
    torch.manual_seed(0)  # the score head is drawn while loading
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
    assert model.config.pad_token_id is None and tuple(model.score.weight.shape) == (1, model.config.hidden_size)
    args = RewardConfig(output_dir=str(out / "hf-run"), max_length=MAX_LENGTH, learning_rate=settings["lr"],
                        per_device_train_batch_size=2, per_device_eval_batch_size=2, gradient_accumulation_steps=2,
                        num_train_epochs=EPOCHS, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01,
                        max_grad_norm=0.5, optim="adamw_torch", seed=42, logging_steps=1, eval_strategy="epoch",
                        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
                        bf16=False, fp16=False, gradient_checkpointing=False, center_rewards_coefficient=None,
                        dataset_num_proc=None, pad_to_multiple_of=None)
    lrs = LearningRates()
    trainer, config, saved, score_tensor = adapted_trainer(RecordingTrainer, model, args, train_dataset, valid_dataset,
                                                           tokenizer, settings, out, callbacks=[lrs])
    peft_model = trainer.model
    pad_id = trainer.data_collator.pad_token_id
    assert pad_id == eos and tokenizer.pad_token == "</s>"
    print("adapter tensors:", len(saved), "non-LoRA:", [(k, tuple(saved[k].shape)) for k in saved if "lora_" not in k])

    # The prepared pairs
    def pairs_of(dataset):
        return [{"chosen_ids": list(r["chosen_ids"]), "rejected_ids": list(r["rejected_ids"])} for r in dataset]

    train_kept, valid_kept = pairs_of(trainer.train_dataset), pairs_of(trainer.eval_dataset)
    train_index, valid_index = list(trainer.train_dataset["index"]), list(trainer.eval_dataset["index"])
    dropped = sorted(set(range(len(train_records))) - set(train_index))
    assert dropped == DROPPED, dropped
    assert valid_index == list(range(len(valid_records)))
    inner_eos = []  # (train?, jsonl index, side) of the kept sequences with an eos token before their last
    for records, kept, index in [(train_records, train_kept, train_index), (valid_records, valid_kept, valid_index)]:
        for r, i in zip(kept, index):
            record = records[i]
            for side in ["chosen", "rejected"]:
                text = record[side] if record[side].endswith("</s>") else record[side] + "</s>"
                ids = r[f"{side}_ids"]
                assert ids == tokenizer(text=record["prompt"] + text)["input_ids"]
                assert ids[0] == bos and ids.count(bos) == 1 and ids[-1] == eos and ids[-2] != eos
                if ids.count(eos) > 1:  # a literal "</s>" inside the text (the word "4</s>") is the eos token too
                    inner_eos.append((records is train_records, i, side))
                # the same as the text without "</s>", then the eos id
                assert ids == tokenizer(text=record["prompt"] + text[:-len("</s>")])["input_ids"] + [eos]
                assert len(ids) <= MAX_LENGTH
    assert inner_eos == [(True, 13, "rejected")], inner_eos
    for i in dropped:
        lengths = [len(tokenizer(text=train_records[i]["prompt"] + train_records[i][side] + "</s>")["input_ids"])
                   for side in ["chosen", "rejected"]]
        assert max(lengths) > MAX_LENGTH, (i, lengths)
    over = {i: [len(tokenizer(text=train_records[i]["prompt"] + train_records[i][side] + "</s>")["input_ids"]) >
                MAX_LENGTH for side in ["chosen", "rejected"]] for i in dropped}
    assert over == {7: [True, True], 10: [False, True], 14: [True, False], 18: [True, True]}, over
    assert any(max(len(r["chosen_ids"]), len(r["rejected_ids"])) == MAX_LENGTH for r in train_kept)
    ending = [i for i, r in enumerate(train_records) if r["chosen"].endswith("</s>") or r["rejected"].endswith("</s>")]
    assert len(ending) >= 2 and not set(ending) & set(dropped), ending
    assert sum(len(r["chosen_ids"]) != len(r["rejected_ids"]) for r in train_kept) >= 10
    assert len(train_kept) == 17 and len(valid_kept) == 6

    # The initial rewards, pooled at the token before the final eos
    initial_rewards(trainer, [train_kept, valid_kept], pools=True)
    (out / "tokens.json").write_text(json.dumps({"train": train_kept, "valid": valid_kept, "dropped": dropped}))

    trainer.lookup = {}
    for position, r in enumerate(train_kept):
        key = tuple(r["chosen_ids"])
        assert key not in trainer.lookup
        trainer.lookup[key] = (position, tuple(r["rejected_ids"]))

    trainer.train()

    pairs = len(train_kept)
    micro_per_epoch, steps_per_epoch, total = step_counts(pairs, EPOCHS)
    assert (micro_per_epoch, steps_per_epoch, total) == (9, 5, 10)
    result = step_results(trainer, lrs, pairs, len(valid_kept), EPOCHS, METRICS, grad_norm=True, eval_metrics=True)
    assert [len(batches) for batches in result["eval_batch_losses"]] == [3] * EPOCHS  # 3 batches of 2 pairs each
    for name in METRICS:
        for e, value in enumerate(result["eval_" + name]):  # the plain mean over the eval batches
            values = [m[name] for m in trainer.eval_batch_metrics[3 * e:3 * (e + 1)]]
            assert close(value, sum(values) / 3, 1e-6), (name, e, value, values)

    save_adapter(peft_model, out / "final")
    with safe_open(str(out / "final" / "adapter_model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(saved)
        assert not torch.equal(f.get_tensor(score_tensor), saved[score_tensor])  # the head was trained
    settings.update({"pad_token_id": pad_id, "bos_token_id": bos, "eos_token_id": eos,
                     "eos_token": tokenizer.eos_token, "warmup_steps": args.get_warmup_steps(total), "steps": total,
                     "steps_per_epoch": steps_per_epoch, "micro_batches_per_epoch": micro_per_epoch,
                     "train_pairs": pairs, "valid_pairs": len(valid_kept), "dropped": dropped,
                     "score_tensor": score_tensor, "modules_to_save": config["modules_to_save"]})
    assert settings["warmup_steps"] == math.ceil(total * 0.1)
    (out / "steps.json").write_text(json.dumps(result))
    (out / "settings.json").write_text(json.dumps(settings))


def chat_case(fixtures, words):
    """AutoTrain's trainer "reward" with chat_template "tokenizer" on the Qwen2 fixture: see the module docstring."""
    out = fixtures / "reference" / "reward_trl" / "chat"
    out.mkdir(parents=True, exist_ok=True)
    model_dir = fixtures / "models" / "qwen2"
    tokenizer, im_end, newline = chatml_tokenizer(model_dir)
    eos, eos_text = tokenizer.eos_token_id, tokenizer.eos_token
    rng = random.Random(CHAT_SEED)
    write_jsonl(out / "train.jsonl", make_chat_records(CHAT_TRAIN, rng, words, tokenizer, explicit_prompt=False))
    write_jsonl(out / "valid.jsonl", make_chat_records(CHAT_VALID, rng, words, tokenizer, explicit_prompt=True))
    train_records, valid_records = read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")
    assert len(train_records) == len(CHAT_TRAIN) == 10 and len(valid_records) == len(CHAT_VALID) == 5
    contents = [m["content"] for r in train_records + valid_records for key in r for m in r[key]]
    assert any(c.isascii() for c in contents) and sum(not c.isascii() for c in contents) >= 10
    for record in train_records:  # full conversations sharing all but their last (assistant) message
        assert set(record) == {"chosen", "rejected"} and record["chosen"][:-1] == record["rejected"][:-1]
        assert record["chosen"][-1]["role"] == record["rejected"][-1]["role"] == "assistant"
    for record in valid_records:  # our extension: the prompt messages apart, one assistant message per side
        assert set(record) == {"prompt", "chosen", "rejected"} and record["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in record["chosen"] + record["rejected"]] == ["assistant", "assistant"]
    roles = [[m["role"] for m in r["chosen"]] for r in train_records] + \
        [[m["role"] for m in r["prompt"] + r["chosen"]] for r in valid_records]
    assert sum(r[0] == "system" for r in roles) >= 3 and sum(r.count("user") > 1 for r in roles) >= 3, roles

    # What AutoTrain hands TRL: each side rendered to a string, no generation prompt
    def render(record, side):
        messages = record.get("prompt", []) + record[side]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        # CHATML renders message by message: the same as the prompt's rendering followed by the last message's
        assert text == tokenizer.apply_chat_template(messages[:-1], tokenize=False) + \
            tokenizer.apply_chat_template(messages[-1:], tokenize=False)
        assert text.endswith("<|im_end|>\n") and eos_text not in text
        return text

    rendered = {split: [{"chosen": render(r, "chosen"), "rejected": render(r, "rejected"), "index": i}
                        for i, r in enumerate(records)]
                for split, records in [("train", train_records), ("valid", valid_records)]}
    settings = {"max_length": CHAT_MAX_LENGTH, "num_labels": 1, "task_type": "SEQ_CLS", "lora_r": 8,
                "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": TARGETS, "chat_template": CHATML}
    torch.manual_seed(0)  # the score head is drawn while loading
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
    assert model.config.pad_token_id is None and tuple(model.score.weight.shape) == (1, model.config.hidden_size)
    model.config.pad_token_id = eos  # as RewardTrainer sets it (from the tokenizer's pad token)
    args = RewardConfig(output_dir=str(out / "hf-run"), max_length=CHAT_MAX_LENGTH, report_to=[], use_cpu=True,
                        dataloader_num_workers=0, disable_tqdm=True, bf16=False, fp16=False,
                        gradient_checkpointing=False, center_rewards_coefficient=None, dataset_num_proc=None,
                        pad_to_multiple_of=None, save_strategy="no")
    trainer, config, _, score_tensor = adapted_trainer(RewardTrainer, model, args, Dataset.from_list(rendered["train"]),
                                                       Dataset.from_list(rendered["valid"]), tokenizer, settings, out)
    pad_id = trainer.data_collator.pad_token_id

    # The pairs as TRL prepared them: the rendered text with the eos text appended, tokenized, none truncated
    def pairs_of(dataset, split):
        pairs = []
        for row in dataset:
            pair = {}
            for side in ["chosen", "rejected"]:
                text, ids = row[side], list(row[f"{side}_ids"])
                assert text == rendered[split][row["index"]][side] + eos_text
                assert ids == tokenizer(text=text)["input_ids"]  # with special tokens: none added here
                assert ids == tokenizer(text=text[:-len(eos_text)], add_special_tokens=False)["input_ids"] + [eos]
                assert ids[-3:] == [im_end, newline, eos] and ids.count(eos) == 1 and len(ids) <= CHAT_MAX_LENGTH
                pair[f"{side}_text"], pair[f"{side}_ids"] = text, ids
            pairs.append(pair)
        return pairs

    train_kept, valid_kept = pairs_of(trainer.train_dataset, "train"), pairs_of(trainer.eval_dataset, "valid")
    train_index = list(trainer.train_dataset["index"])
    dropped = sorted(set(range(len(train_records))) - set(train_index))
    assert dropped == CHAT_DROPPED, dropped
    assert list(trainer.eval_dataset["index"]) == list(range(len(valid_records)))
    over = {i: [len(tokenizer(text=rendered["train"][i][side] + eos_text)["input_ids"]) > CHAT_MAX_LENGTH
                for side in ["chosen", "rejected"]] for i in dropped}
    assert over == {3: [False, True], 6: [True, False]}, over
    assert any(max(len(r["chosen_ids"]), len(r["rejected_ids"])) == CHAT_MAX_LENGTH for r in train_kept)
    assert len(train_kept) == 8 and len(valid_kept) == 5

    # The initial rewards, pooled at the "\n" after the last "<|im_end|>"
    initial_rewards(trainer, [train_kept, valid_kept], pools=False)
    (out / "tokens.json").write_text(json.dumps({"train": train_kept, "valid": valid_kept, "dropped": dropped}))
    settings.update({"pad_token_id": pad_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos,
                     "eos_token": eos_text, "train_pairs": len(train_kept), "valid_pairs": len(valid_kept),
                     "dropped": dropped, "score_tensor": score_tensor, "modules_to_save": config["modules_to_save"]})
    (out / "settings.json").write_text(json.dumps(settings))


def main():
    run_cases(text_case, chat_case)


if __name__ == "__main__":
    main()
