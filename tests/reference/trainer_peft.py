#!/usr/bin/env python3
"""Oracle for the training loop: transformers' Trainer + PEFT LoRA on the llama fixture, 30 optimizer
steps (2 epochs of 15) over fixed random token blocks, fp32, dropout 0, clipping on, accumulation 4 with a
short last window. Cases: linear (AdamW, linear schedule, LoRA on q/k/v/o), cosine (cosine, all 7 projections),
adamw_torch_fused / paged_adamw_32bit (linear, q/v/down, Trainer's optim set to that name), adafactor
(cosine, q/v/down) and reduce_lr_on_plateau (lr 1e-6, q/v, evaluated after every step). Writes, per case,
under reference/trainer_peft/<case>/:
  tokens.bin                 the blocks as an autotrain token cache (so both sides read the same ids)
  valid.bin                  the validation blocks, for the evaluated case
  initial/ final/            PEFT adapters (save_pretrained) before and after training
  steps.json                 per optimizer step: the loss (the window's summed token loss / its token
                             count, unrounded) and the learning rate used (and each evaluation's eval_loss)
  settings.json              the hyperparameters, for the C++ side to use the same."""
import argparse
import json
import os
import struct
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

BLOCK, BLOCKS = 16, 117  # 117 blocks / batch 2 = 59 micro-batches: the last has 1 block; 15 steps of 4, 4, ..., 3


class Blocks(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return self.ids.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class RecordingTrainer(Trainer):
    """Keeps every micro-batch's loss unrounded (transformers logs it rounded)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.micro_losses = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.micro_losses.append((self.state.global_step, loss.item()))
        return loss


class LearningRates(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def write_token_cache(path, ids):
    flat = ids.reshape(-1).to(torch.int32)
    with open(path, "wb") as f:
        f.write(b"ATTOKEN1")
        f.write(flat.numpy().tobytes())
        f.write(struct.pack("<Q", flat.numel()))
        f.write(b"ATTOKEND")


def run_case(fixtures, out, name, scheduler, targets, optimizer="adamw_torch", lr=2e-3, evaluate=False):
    out.mkdir(parents=True, exist_ok=True)
    settings = {"scheduler": scheduler, "optimizer": optimizer, "target_modules": targets, "lr": lr, "batch_size": 2,
                "gradient_accumulation": 4, "epochs": 2, "warmup_ratio": 0.1, "weight_decay": 0.01,
                "max_grad_norm": 0.5, "seed": 42, "block_size": BLOCK, "lora_r": 8, "lora_alpha": 16}
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 1000, (BLOCKS, BLOCK), generator=generator)
    write_token_cache(out / "tokens.bin", ids)
    valid = None
    if evaluate:  # an evaluation after every optimizer step, as AutoTrain's eval_strategy "steps", logging_steps 1
        settings.update({"valid_split": "validation", "eval_strategy": "steps", "logging_steps": 1})
        valid = torch.randint(0, 1000, (12, BLOCK), generator=generator)
        write_token_cache(out / "valid.bin", valid)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(fixtures / "models" / "llama", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                                             task_type="CAUSAL_LM"))
    with torch.no_grad():  # B non-zero from the start, so the first steps move A too
        for module_name, parameter in model.named_parameters():
            if "lora_B" in module_name:
                parameter.normal_(0, 0.02, generator=generator)
    model.save_pretrained(out / "initial")

    args = TrainingArguments(output_dir=str(out / "hf-run"), per_device_train_batch_size=2, gradient_accumulation_steps=4,
                             num_train_epochs=2, learning_rate=settings["lr"], lr_scheduler_type=scheduler,
                             warmup_steps=0.1, weight_decay=0.01, max_grad_norm=0.5, optim=optimizer, seed=42,
                             logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True,
                             eval_strategy="steps" if evaluate else "no", eval_steps=1, per_device_eval_batch_size=2)
    lrs = LearningRates()
    trainer = RecordingTrainer(model=model, args=args, train_dataset=Blocks(ids), callbacks=[lrs],
                               eval_dataset=Blocks(valid) if evaluate else None)
    trainer.train()
    steps = {}
    for step, loss in trainer.micro_losses:
        steps.setdefault(step, 0.0)
        steps[step] += loss
    losses = [steps[s] for s in sorted(steps)]
    assert len(losses) == 30 and len(lrs.lrs) == 30, (len(losses), len(lrs.lrs))
    model.save_pretrained(out / "final")
    record = {"loss": losses, "lr": lrs.lrs}
    if evaluate:
        record["eval_loss"] = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
        assert len(record["eval_loss"]) == 30
    (out / "steps.json").write_text(json.dumps(record))
    (out / "settings.json").write_text(json.dumps(settings))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    out = fixtures / "reference" / "trainer_peft"
    run_case(fixtures, out / "linear", "linear", "linear", ["q_proj", "k_proj", "v_proj", "o_proj"])
    run_case(fixtures, out / "cosine", "cosine", "cosine",
             ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # The other AdamW implementations AutoTrain configs name: torch's fused kernel and bitsandbytes' 32-bit one
    # (paged: its moments in CUDA unified memory where there is a GPU).
    for optimizer in ["adamw_torch_fused", "paged_adamw_32bit"]:
        run_case(fixtures, out / optimizer, optimizer, "linear", ["q_proj", "v_proj", "down_proj"], optimizer)
    # An optimizer of another family through the whole loop (each name's update alone: optimizers.py).
    run_case(fixtures, out / "adafactor", "adafactor", "cosine", ["q_proj", "v_proj", "down_proj"], "adafactor")
    # reduce_lr_on_plateau, stepped with eval_loss after each of 30 evaluations: at lr 1e-6 eval_loss moves by less
    # than the 1e-4 relative threshold, so the rate is cut to 1e-7 after evaluation 12 and to 1e-8 after 23.
    run_case(fixtures, out / "reduce_lr_on_plateau", "reduce_lr_on_plateau", "reduce_lr_on_plateau",
             ["q_proj", "v_proj"], lr=1e-6, evaluate=True)


if __name__ == "__main__":
    main()
