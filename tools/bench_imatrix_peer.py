#!/usr/bin/env python3
"""The pieces of tools/bench_imatrix.sh that run in Python.

  bench_imatrix_peer.py model OUT_DIR TOKENIZER_DIR   trains the bench's small Llama on Debian's license texts
                                                      (/usr/share/common-licenses) and tests/data/multilingual.txt
                                                      and writes OUT_DIR/model (fp32 safetensors + the tokenizer)
                                                      and OUT_DIR/data/{train,valid}.jsonl
  bench_imatrix_peer.py peer MODEL DATA.jsonl BLOCK OUT.json
                                                      the Python peer of `autotrain imatrix`: transformers with a
                                                      forward pre-hook on every projection and the LM head summing
                                                      x^2 (float64) over the split's blocks, packed as AutoTrain
                                                      packs them (each text + eos, concatenated, whole blocks)
  bench_imatrix_peer.py compare OURS.imatrix.gguf PEER.json
                                                      the largest difference between the two, relative to each
                                                      entry's largest value
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def texts():
    """Paragraphs of Debian's license texts (on every Debian system) and the multilingual corpus lines."""
    out = []
    for path in sorted(Path("/usr/share/common-licenses").iterdir()):
        if path.is_file():
            for paragraph in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
                paragraph = " ".join(paragraph.split())
                if len(paragraph) > 40:
                    out.append(paragraph)
    out += [line for line in (ROOT / "tests" / "data" / "multilingual.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return out


def make_model(out_dir, tokenizer_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    all_texts = texts()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(all_texts))
    valid = [all_texts[i] for i in order[: len(all_texts) // 10]]
    train = [all_texts[i] for i in order[len(all_texts) // 10:]]
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid)):
        with open(out_dir / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text in rows:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    ids = []
    for text in train:
        ids += tokenizer(text + tokenizer.eos_token)["input_ids"]
    seq = 128
    data = torch.tensor(ids[: len(ids) // seq * seq]).reshape(-1, seq)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    steps, batch = int(os.environ.get("BENCH_TRAIN_STEPS", "400")), 16
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    start = time.time()
    for step in range(steps):
        rows = data[torch.randint(0, data.shape[0], (batch,))]
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"  train step {step}: loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)
    model.save_pretrained(str(out_dir / "model"))
    tokenizer.save_pretrained(str(out_dir / "model"))
    print(f"  {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, {data.numel()} training tokens")


@torch.no_grad()
def peer(model_dir, data_file, block, out):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = []
    for line in open(data_file, encoding="utf-8"):
        ids += tokenizer(json.loads(line)["text"] + tokenizer.eos_token)["input_ids"]
    blocks = torch.tensor(ids[: len(ids) // block * block]).reshape(-1, block)
    sums = {}

    def hook_for(key):
        def hook(module, args):
            x = args[0].reshape(-1, args[0].shape[-1]).double()
            total, tokens = sums.get(key, (0.0, 0))
            sums[key] = (total + x.square().sum(0), tokens + x.shape[0])
        return hook

    for name, module in model.named_modules():
        parts = name.split(".")
        if name == "lm_head":
            module.register_forward_pre_hook(hook_for("output.weight"))
        elif parts[-1] in PROJECTIONS:
            kind = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}[parts[-1]]
            module.register_forward_pre_hook(hook_for(f"blk.{parts[2]}.{kind}.weight"))
    for batch in blocks.split(8):
        model(input_ids=batch)
    Path(out).write_text(json.dumps({k: (v[0] / v[1]).tolist() for k, v in sums.items()}))
    print(f"  peer: {blocks.shape[0]} blocks of {block} tokens, {len(sums)} weights, {time.time() - start:.1f} s")


def compare(ours, theirs):
    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    from imatrix_files import read_values
    values, _, _ = read_values(ours)
    peer_values = json.loads(Path(theirs).read_text())
    worst = max(float(np.abs(values[k] - np.array(v)).max() / np.abs(v).max()) for k, v in peer_values.items())
    print(f"  ours against the peer: {len(values)} / {len(peer_values)} weights, largest difference {worst:.2g} "
          f"of an entry's largest value")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"model": make_model, "peer": lambda m, d, b, o: peer(m, d, int(b), o), "compare": compare}[command](*args)
