#!/usr/bin/env python3
"""GPU benchmark peer of `autotrain train`: the same QLoRA / LoRA run with transformers + PEFT + bitsandbytes,
set up as AutoTrain's default trainer sets it up. Nothing is downloaded.

  make-model  --shape 1b|8b|tiny --out DIR [--device cuda|cpu] [--texts N]
      DIR/model: a random-weight Llama (bf16 safetensors, config.json, a byte-level BPE tokenizer.json of
      exactly the model's vocabulary, trained on the data by tools/make_fixtures.train_bpe);
      DIR/data/train.jsonl: pseudo-sentences ("text" column), deterministic from --seed.
  peft        --model DIR --data DIR --steps N [--block-size B --batch-size S --lora-r R
              --target-modules all-linear|q,k,v,... --quantization int4|none --precision bf16|fp16]
      warms up (--warmup-steps, 2), times N optimizer steps between torch.cuda.synchronize() calls and
      prints one JSON line: {"peer": "peft+bnb", "tokens_per_s": ..., "peak_alloc_bytes": ..., ...}; the
      peaks (torch.cuda.max_memory_allocated / _reserved) are over the training steps, counted from after
      the model is loaded and quantized (model_alloc_bytes: what it holds then).
  ours-config --model DIR --data DIR --out FILE [the same settings]
      writes the matching training_params.json for `autotrain train` (AutoTrain's keys); time N steps of
      ours with `autotrain train --config FILE --stop-after-steps N` and its metrics.jsonl.
  dequantize  [--double-quant]
      times bitsandbytes' NF4 dequantization to bf16 (blocksize 64) on Llama-3-8B's projection shapes, the
      peer of tools/bench_gpu's dequantization table; one JSON line per shape.
  gemv
      times bitsandbytes' 4-bit matmul of one row (double-quantized NF4, bf16) on the same shapes and a whole
      layer's seven back to back, in CUDA graphs as tools/bench_gpu times ours: the peer of its GEMV table.
  generate    --model DIR --prompt TEXT --new-tokens N [--quantization int4|none --dtype bf16|fp16|fp32]
      transformers' greedy generation on the GPU, the base loaded as `autotrain generate --quantization` loads
      it, timed as ours reports itself: the peer of tools/bench_generate.sh; one JSON line.

Shapes (vocabulary 32000, as Llama 2; the 8b one is Llama-3-8B's body with that smaller vocabulary):
  1b: hidden 2048, 16 layers, 32 heads / 8 kv heads, intermediate 8192 (1.1 B parameters)
  8b: hidden 4096, 32 layers, 32 heads / 8 kv heads, intermediate 14336 (7.5 B parameters)

AutoTrain's setup, mirrored (autotrain-advanced 0.8.37, trainers/clm): data packed into blocks (eos appended
as text, concatenated, remainder dropped, labels = inputs: tools/bench_train_peer.blocks_of); int4 is
BitsAndBytesConfig(nf4, double quantization off, as AutoTrain) followed by prepare_model_for_kbit_training
(norms, embeddings and lm_head in fp32; gradient checkpointing with use_reentrant=True); without
quantization, gradient checkpointing with use_reentrant=False; LoRA bias "none"; AdamW (adamw_torch), linear
schedule with warmup_ratio 0.1, max_grad_norm 1.0; the step under torch.autocast in the precision (fp16 with
a GradScaler), as Trainer's bf16/fp16 flags do. Where this differs from AutoTrain: the base is loaded in the
precision's dtype (AutoTrain leaves transformers' default) and the 4-bit compute dtype follows the
precision (AutoTrain fixes fp16), so both runs compute in the dtype asked for; --compute-dtype fp16 gives
AutoTrain's.
"""
import argparse
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=176),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336),
}
VOCAB_SIZE = 32000
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ---- make-model ------------------------------------------------------------------------------------------

def pseudo_words(rng, count):
    """count distinct pronounceable pseudo-words, in a random (Zipf rank) order."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "str", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ou", "oo", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng"]
    words = set()
    while len(words) < count:
        syllables = rng.choice((1, 1, 2, 2, 2, 3))
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables)))
    words = sorted(words)
    rng.shuffle(words)
    return words


def write_pseudo_text(path: Path, texts: int, seed: int):
    """train.jsonl of `texts` records of 3-8 sentences of 6-24 Zipf-distributed pseudo-words (plus numbers
    and commas): enough distinct byte pairs for a 32000-token BPE, and the same bytes for the same seed."""
    rng = random.Random(seed)
    words = pseudo_words(rng, 50000)
    cumulative, total = [], 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1)
        cumulative.append(total)

    def sentence():
        n = rng.randint(6, 24)
        chosen = rng.choices(words, cum_weights=cumulative, k=n)
        if rng.random() < 0.2:
            chosen[rng.randrange(n)] = str(rng.randint(0, 9999))
        if n > 10 and rng.random() < 0.5:
            chosen[rng.randrange(1, n - 1)] += ","
        return " ".join(chosen).capitalize() + rng.choice(".....?!")

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(texts):
            f.write(json.dumps({"text": " ".join(sentence() for _ in range(rng.randint(3, 8)))}) + "\n")


def make_model(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from make_fixtures import train_bpe

    out = Path(args.out)
    model_dir, data_dir = out / "model", out / "data"
    started = time.perf_counter()
    write_pseudo_text(data_dir / "train.jsonl", args.texts, args.seed)
    corpus = out / "corpus.txt"  # the texts without the JSON quoting, for the tokenizer trainer
    with open(data_dir / "train.jsonl", encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
        for line in src:
            dst.write(json.loads(line)["text"] + "\n")
    train_bpe(model_dir, corpus, VOCAB_SIZE)
    corpus.unlink()
    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    if len(vocab) != VOCAB_SIZE:
        sys.exit(f"make-model: the tokenizer has {len(vocab)} tokens, not {VOCAB_SIZE}: raise --texts")
    eos = vocab["<|endoftext|>"]
    data_seconds = time.perf_counter() - started

    config = LlamaConfig(vocab_size=VOCAB_SIZE, **SHAPES[args.shape], max_position_embeddings=8192,
                         rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                         tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos, initializer_range=0.02)
    torch.manual_seed(args.seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the device: an 8b never exists in fp32
    try:
        with torch.device(args.device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    with torch.no_grad():  # std 0.02 everywhere, norms at one, whatever transformers' init did
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.02)
            else:
                parameter.fill_(1.0)
    model.config.dtype = torch.bfloat16
    model.to("cpu").save_pretrained(str(model_dir), max_shard_size="2GB")
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model": str(model_dir), "data": str(data_dir), "shape": args.shape,
                      "parameters": parameters, "vocab_size": VOCAB_SIZE, "texts": args.texts,
                      "data_and_tokenizer_seconds": round(data_seconds, 1),
                      "seconds": round(time.perf_counter() - started, 1)}))


# ---- shared settings -----------------------------------------------------------------------------------

def target_modules(value):
    """"all-linear", or a comma list of projections; "q" is short for "q_proj"."""
    if value.strip().lower() == "all-linear":
        return "all-linear"
    names = [name.strip() for name in value.split(",") if name.strip()]
    names = [name if name.endswith("_proj") else name + "_proj" for name in names]
    unknown = [name for name in names if name not in PROJECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown target modules {unknown}: use all-linear or {PROJECTIONS}")
    return ",".join(names)


def add_run_settings(parser):
    parser.add_argument("--model", required=True, help="model folder (make-model's DIR/model)")
    parser.add_argument("--data", required=True, help="folder with train.jsonl (make-model's DIR/data)")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--target-modules", type=target_modules, default="all-linear",
                        help="all-linear, or a comma list: q,k,v,o,gate,up,down (or q_proj,...)")
    parser.add_argument("--quantization", choices=["int4", "none"], default="int4")
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--disable-gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=42)


def autotrain_params(args, steps_hint=None):
    """training_params.json with AutoTrain's keys for the same run."""
    return {
        "model": os.path.abspath(args.model), "project_name": "bench-gpu", "data_path": os.path.abspath(args.data),
        "train_split": "train", "valid_split": None, "text_column": "text", "add_eos_token": True,
        "block_size": args.block_size, "model_max_length": max(2048, args.block_size),
        "mixed_precision": args.precision, "lr": args.lr, "epochs": 1, "batch_size": args.batch_size,
        "gradient_accumulation": args.gradient_accumulation, "optimizer": "adamw_torch", "scheduler": "linear",
        "warmup_ratio": 0.1, "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": args.seed,
        "quantization": args.quantization, "target_modules": args.target_modules, "peft": True,
        "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
        "disable_gradient_checkpointing": args.disable_gradient_checkpointing, "logging_steps": 1,
        "save_total_limit": 1,
    }


def ours_config(args):
    params = autotrain_params(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(params, indent=2) + "\n")
    print(f"wrote {args.out}; time ours with: autotrain train --config {args.out} --no-resume "
          f"--stop-after-steps N (tokens/s per step in bench-gpu/metrics.jsonl)", file=sys.stderr)


# ---- peft ----------------------------------------------------------------------------------------------

def load_peft_model(args, device, dtype):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": dtype, "device_map": {"": device}}
    if args.quantization == "int4":
        compute = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.compute_dtype or args.precision]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
            bnb_4bit_compute_dtype=compute)
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    model.config.use_cache = False
    checkpointing = not args.disable_gradient_checkpointing
    if args.quantization == "int4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": True})
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def peft_run(args):
    import torch
    from transformers import AutoTokenizer, get_scheduler
    from bench_train_peer import blocks_of

    device = args.device
    cuda = device.startswith("cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    params = autotrain_params(args)
    micro_batches = (args.warmup_steps + args.steps) * args.gradient_accumulation
    blocks = blocks_of(params, tokenizer, max_blocks=micro_batches * args.batch_size)
    if blocks.shape[0] < micro_batches * args.batch_size:
        sys.exit(f"peft: {args.data} holds {blocks.shape[0]} blocks of {args.block_size} tokens; "
                 f"{micro_batches * args.batch_size} needed (make-model --texts more)")
    model = load_peft_model(args, device, dtype)
    load_seconds = time.perf_counter() - started
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    total_steps = args.warmup_steps + args.steps
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(0.1 * total_steps),
                              num_training_steps=total_steps)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=args.precision == "fp16")
    order = torch.randperm(blocks.shape[0], generator=torch.Generator().manual_seed(args.seed))
    model.train()

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    def optimizer_step(step):
        total_loss = 0.0
        for micro in range(args.gradient_accumulation):
            first = (step * args.gradient_accumulation + micro) * args.batch_size
            batch = blocks[order[first:first + args.batch_size]].to(device, non_blocking=True)
            with torch.autocast(device.split(":")[0], dtype=dtype):
                loss = model(input_ids=batch, labels=batch).loss / args.gradient_accumulation
            scaler.scale(loss).backward()
            total_loss += loss.detach()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return total_loss

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        load_peak = torch.cuda.max_memory_allocated()  # after the reset: what the loaded model holds
    for step in range(args.warmup_steps):
        optimizer_step(step)
    synchronize()
    step_seconds, losses = [], []
    for step in range(args.warmup_steps, total_steps):
        begin = time.perf_counter()
        losses.append(optimizer_step(step))
        synchronize()
        step_seconds.append(time.perf_counter() - begin)
    seconds = sum(step_seconds)
    if args.profile:  # two more steps, outside the timing, as `autotrain train` with AUTOTRAIN_PROFILE
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as recorded:
            for step in range(total_steps, total_steps + 2):
                optimizer_step(step % max(1, total_steps))
            synchronize()
        recorded.export_chrome_trace(args.profile)
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        Path(args.profile + ".summary.txt").write_text(
            recorded.key_averages().table(sort_by=sort, row_limit=60, max_name_column_width=90))
    tokens = args.steps * args.gradient_accumulation * args.batch_size * args.block_size
    result = {
        "peer": "peft+bnb" if args.quantization == "int4" else "peft",
        "tokens_per_s": tokens / seconds,
        "peak_alloc_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        "model_alloc_bytes": load_peak if cuda else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "steps": args.steps, "warmup_steps": args.warmup_steps, "seconds": seconds,
        "step_seconds_median": statistics.median(step_seconds), "tokens": tokens,
        "final_loss": float(losses[-1]), "load_seconds": load_seconds,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "block_size": args.block_size, "batch_size": args.batch_size,
        "gradient_accumulation": args.gradient_accumulation, "lora_r": args.lora_r,
        "target_modules": args.target_modules, "quantization": args.quantization, "precision": args.precision,
        "compute_dtype": (args.compute_dtype or args.precision) if args.quantization == "int4" else args.precision,
        "gradient_checkpointing": not args.disable_gradient_checkpointing,
        "device": torch.cuda.get_device_name() if cuda else device, "versions": versions(),
    }
    print(json.dumps(result))


def versions():
    import importlib.metadata
    found = {}
    for package in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


# ---- dequantize ------------------------------------------------------------------------------------------

def dequantize_run(args):
    """bitsandbytes' NF4 dequantization (blocksize 64, bf16 out) on Llama-3-8B's projection shapes: the step
    every QLoRA matmul starts with, next to tools/bench_gpu's figure for ours. One JSON line per shape."""
    import bitsandbytes.functional as bnbf
    import torch

    for name, out_features, in_features in DEQUANTIZE_SHAPES:
        weight = torch.randn(out_features, in_features, dtype=torch.bfloat16, device="cuda") * 0.02
        packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4",
                                           compress_statistics=args.double_quant)
        for _ in range(3):
            bnbf.dequantize_4bit(packed, state)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        samples = []
        for _ in range(7):
            torch.cuda.synchronize()
            start.record()
            for _ in range(20):
                bnbf.dequantize_4bit(packed, state)
            stop.record()
            stop.synchronize()
            samples.append(start.elapsed_time(stop) / 20 * 1e3)
        us = sorted(samples)[len(samples) // 2]
        moved = packed.numel() + state.absmax.numel() * state.absmax.element_size() + weight.numel() * 2
        print(json.dumps({"bench": "dequantize", "library": "bitsandbytes", "shape": name,
                          "double_quant": args.double_quant, "us": us, "gbs": moved / us / 1e3,
                          "device": torch.cuda.get_device_name()}))


DEQUANTIZE_SHAPES = [("q/o 4096x4096", 4096, 4096), ("k/v 1024x4096", 1024, 4096),
                     ("gate/up 14336x4096", 14336, 4096), ("down 4096x14336", 4096, 14336)]


# ---- gemv ------------------------------------------------------------------------------------------------

def graph_us_per_call(calls, issue):
    """Microseconds per call of issue(i), i = 0 .. calls - 1, captured in one CUDA graph (as tools/bench_gpu
    times ours: the GPU's time, not Python's launch cost); the median of 5 replays."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for i in range(3):  # warm-up outside the capture
            issue(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        for i in range(calls):
            issue(i)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(5):
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e3 / calls)
    return sorted(samples)[len(samples) // 2]


def gemv_run(args):
    """bitsandbytes' 4-bit matmul of one row of x (bnb.matmul_4bit without gradients, its gemm_4bit kernel),
    NF4, blocksize 64, double-quantized, bf16, on Llama-3-8B's projection shapes and a whole layer's seven back to
    back: the peer of tools/bench_gpu's GEMV table, timed as ours is (a CUDA graph over copies of the weights
    larger than 4x the L2 cache, so that every call reads its weight from memory). One JSON line per shape and
    one for the layer."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import torch

    l2_bytes = torch.cuda.get_device_properties(0).L2_cache_size
    device = torch.cuda.get_device_name()

    def quantized(out_features, in_features):
        weight = torch.randn(out_features, in_features, dtype=torch.bfloat16, device="cuda") * 0.02
        packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
        moved = (packed.numel() + state.absmax.numel() * state.absmax.element_size() +
                 state.state2.absmax.numel() * state.state2.absmax.element_size() + 2 * (in_features + out_features))
        return packed, state, moved

    def copies_for(moved):
        return max(2, math.ceil(4 * l2_bytes / moved))

    for name, out_features, in_features in DEQUANTIZE_SHAPES:
        first = quantized(out_features, in_features)
        weights = [first] + [quantized(out_features, in_features) for _ in range(copies_for(first[2]) - 1)]
        x = torch.randn(1, in_features, dtype=torch.bfloat16, device="cuda")
        calls = len(weights) * math.ceil(40 / len(weights))

        def issue(i):
            packed, state, _ = weights[i % len(weights)]
            bnb.matmul_4bit(x, packed.t(), quant_state=state)

        us = graph_us_per_call(calls, issue)
        print(json.dumps({"bench": "gemv", "library": "bitsandbytes", "shape": name, "m": 1, "us": us,
                          "gbs": first[2] / us / 1e3, "weight_copies": len(weights), "device": device}), flush=True)
        del weights

    layer_shapes = [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096), (14336, 4096), (14336, 4096),
                    (4096, 14336)]
    first = [quantized(o, i) for o, i in layer_shapes]
    layer_bytes = sum(moved for _, _, moved in first)
    layers = [first] + [[quantized(o, i) for o, i in layer_shapes] for _ in range(copies_for(layer_bytes) - 1)]
    x = torch.randn(1, 4096, dtype=torch.bfloat16, device="cuda")
    x_down = torch.randn(1, 14336, dtype=torch.bfloat16, device="cuda")

    def issue_layer(i):
        for (packed, state, _), (_, in_features) in zip(layers[i % len(layers)], layer_shapes):
            bnb.matmul_4bit(x if in_features == 4096 else x_down, packed.t(), quant_state=state)

    us = graph_us_per_call(4 * len(layers), issue_layer)
    print(json.dumps({"bench": "gemv_layer", "library": "bitsandbytes", "shape": "llama-3-8b", "m": 1, "us": us,
                      "bytes": layer_bytes, "gbs": layer_bytes / us / 1e3, "layer_copies": len(layers),
                      "device": device}), flush=True)


# ---- generate --------------------------------------------------------------------------------------------

def generate_run(args):
    """transformers' greedy generation (model.generate with its KV cache, do_sample=False, past eos) of
    --new-tokens tokens after --prompt, batch 1, on the GPU. int4 is bitsandbytes NF4 (blocksize 64, no double
    quantization, compute in --dtype), as `autotrain generate --quantization int4` and training's int4 load it;
    at one row of x its 4-bit matmul is the gemv_4bit kernel. Timed as ours reports itself: the first token's
    latency (a generate() of one token: the prompt's forward), then the rate of the others, (N - 1) / (time of N
    - time of 1), after an untimed warm-up; the card's memory in use at the end (torch.cuda.mem_get_info, every
    context, as ours reports it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    kwargs = {"dtype": dtype, "device_map": {"": args.device}}
    if args.quantization == "int4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
            bnb_4bit_compute_dtype=dtype)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).eval()
    load_seconds = time.perf_counter() - started
    ids = AutoTokenizer.from_pretrained(args.model)(args.prompt, return_tensors="pt").input_ids.to(args.device)
    model.generation_config.eos_token_id = None
    cuda = args.device.startswith("cuda")

    def seconds_for(tokens):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                 min_new_tokens=tokens, do_sample=False, pad_token_id=0)
        if cuda:
            torch.cuda.synchronize()
        assert out.shape[1] == ids.shape[1] + tokens
        return time.perf_counter() - start

    seconds_for(4)  # warm-up: cuBLAS handles, bitsandbytes' kernels
    first = seconds_for(1)
    whole = seconds_for(args.new_tokens)
    free, total = torch.cuda.mem_get_info() if cuda else (0, 0)
    print(json.dumps({"peer": "transformers" + ("+bnb" if args.quantization == "int4" else ""),
                      "quantization": args.quantization, "dtype": args.dtype, "prompt_tokens": ids.shape[1],
                      "new_tokens": args.new_tokens, "first_token_ms": first * 1e3,
                      "tokens_per_s": (args.new_tokens - 1) / (whole - first),
                      "memory_in_use_bytes": total - free, "load_seconds": load_seconds,
                      "device": torch.cuda.get_device_name() if cuda else args.device, **versions()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-model", help="random-weight Llama + tokenizer + dataset")
    make.add_argument("--shape", choices=sorted(SHAPES), required=True)
    make.add_argument("--out", required=True)
    make.add_argument("--device", default="cuda", help="where the weights are drawn (cuda: fast)")
    make.add_argument("--texts", type=int, default=10000, help="records in train.jsonl (~110 tokens each)")
    make.add_argument("--seed", type=int, default=0)
    peft = commands.add_parser("peft", help="time N QLoRA/LoRA steps with transformers + PEFT + bitsandbytes")
    add_run_settings(peft)
    peft.add_argument("--steps", type=int, required=True)
    peft.add_argument("--warmup-steps", type=int, default=2)
    peft.add_argument("--compute-dtype", choices=["bf16", "fp16"],
                      help="4-bit compute dtype (default: the precision; AutoTrain: fp16)")
    peft.add_argument("--device", default="cuda")
    peft.add_argument("--profile", help="also profile two more steps (torch.profiler) into this Chrome trace, "
                      "with a table per operator in PROFILE.summary.txt")
    ours = commands.add_parser("ours-config", help="the matching training_params.json for autotrain")
    add_run_settings(ours)
    ours.add_argument("--out", required=True)
    dequantize = commands.add_parser("dequantize", help="time bitsandbytes' NF4 dequantization (8B shapes)")
    dequantize.add_argument("--double-quant", action="store_true")
    commands.add_parser("gemv", help="time bitsandbytes' 4-bit matmul of one row (8B shapes and a layer)")
    generate = commands.add_parser("generate", help="time transformers' (+ bitsandbytes') greedy generation")
    generate.add_argument("--model", required=True)
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--new-tokens", type=int, default=128)
    generate.add_argument("--quantization", choices=["int4", "none"], default="int4")
    generate.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    generate.add_argument("--device", default="cuda", help="cpu: a smoke test of this script, with --quantization none")
    args = parser.parse_args()
    {"make-model": make_model, "peft": peft_run, "ours-config": ours_config,
     "dequantize": dequantize_run, "gemv": gemv_run, "generate": generate_run}[args.command](args)


if __name__ == "__main__":
    main()
