#!/usr/bin/env python3
"""Writes the test fixtures of autotrain into a build folder, with fixed seeds:

  OUT/tokenizers/bpe/            byte-level BPE (Qwen2 / Llama-3 style) trained with `tokenizers`
  OUT/tokenizers/sentencepiece/  sentencepiece BPE with byte fallback (Llama-2 style)
  OUT/models/llama/              LlamaForCausalLM: GQA, untied lm_head, llama3 rope scaling, sentencepiece
  OUT/models/qwen2/              Qwen2ForCausalLM: q/k/v bias, tied embeddings, padded vocab, sharded, BPE
  OUT/models/mistral/            MistralForCausalLM, sentencepiece
  OUT/models/qwen3/              Qwen3ForCausalLM: q/k norms, head_dim 32 (q 128 wide, hidden 64), untied, BPE
  OUT/reference/<topic>/         whatever each tests/reference/*.py writes (oracle outputs for the tests)

Both tokenizers are trained on tests/data/multilingual.txt. Nothing is downloaded. A stamp of the inputs
(this script, tools/requirements.txt, the reference scripts, the corpus, the chat templates, the ggml quantizer
fixture, the oracle versions) makes a second run a no-op.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "multilingual.txt"
REFERENCE_SCRIPTS = sorted((ROOT / "tests" / "reference").glob("*.py"))
CHAT_TEMPLATES = sorted((ROOT / "tests" / "data" / "chat_templates").glob("*.jinja"))  # read by chat_templates.py
GGML_QUANTS = sorted((ROOT / "tests" / "data" / "ggml_quants").glob("*"))  # read by ggml_quants.py

# Qwen2's pre-tokenizer split pattern (tokenizer.json of the Qwen2 family).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
BPE_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1000


def stamp_of_inputs():
    import tokenizers, sentencepiece, torch, transformers, safetensors
    digest = hashlib.sha256()
    for path in [Path(__file__), ROOT / "tools" / "requirements.txt", CORPUS, *REFERENCE_SCRIPTS, *CHAT_TEMPLATES,
                 *GGML_QUANTS]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for module in (tokenizers, sentencepiece, torch, transformers, safetensors):
        digest.update(f"{module.__name__}={module.__version__}".encode())
    return digest.hexdigest()


def train_bpe(out: Path, corpus: Path = CORPUS, vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer.json with Qwen2's split pattern; vocab_size counts the special tokens
    and the 256 byte symbols (fewer when the corpus runs out of pairs to merge)."""
    from tokenizers import Tokenizer, Regex, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BPE_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train([str(corpus)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", model_max_length=32768)
    fast.save_pretrained(str(out))


def train_sentencepiece(out: Path):
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(CORPUS), model_prefix=str(out / "tokenizer"), model_type="bpe", vocab_size=VOCAB_SIZE,
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, character_coverage=0.98,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
        remove_extra_whitespaces=False, normalization_rule_name="identity", hard_vocab_limit=False)
    (out / "tokenizer.vocab").unlink()
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "model_max_length": 4096, "legacy": False})
    write_json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def write_json(path: Path, value):
    path.write_text(json.dumps(value, indent=2) + "\n")


def make_models(out: Path, tokenizers_dir: Path):
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

    common = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=512)
    specs = {
        "llama": (LlamaConfig, LlamaForCausalLM, "sentencepiece", dict(
            vocab_size=VOCAB_SIZE, tie_word_embeddings=False, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64})),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, "bpe", dict(
            vocab_size=1024, tie_word_embeddings=True, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
        "mistral": (MistralConfig, MistralForCausalLM, "sentencepiece", dict(
            vocab_size=VOCAB_SIZE, tie_word_embeddings=False, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
            sliding_window=4096, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        # Qwen3's head_dim is its own (128 in every Qwen3), not hidden_size / num_attention_heads.
        "qwen3": (Qwen3Config, Qwen3ForCausalLM, "bpe", dict(
            vocab_size=1024, tie_word_embeddings=False, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    }
    for seed, (name, (config_class, model_class, tokenizer_name, extra)) in enumerate(specs.items()):
        torch.manual_seed(1234 + seed)
        config = config_class(**{**common, **({"head_dim": 32} if name == "qwen3" else {})}, **extra)
        config.dtype = torch.float32
        model = model_class(config).eval()
        # Random init gives near-uniform logits; widen the weights so parity tests see real contrasts.
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() >= 2:
                    parameter.normal_(0.0, 0.08)
                else:
                    parameter.normal_(1.0 if parameter.abs().mean() > 0.5 else 0.0, 0.05)
        folder = out / name
        shard = "200KB" if name == "qwen2" else "100MB"
        model.save_pretrained(str(folder), max_shard_size=shard)
        for item in (tokenizers_dir / tokenizer_name).iterdir():
            shutil.copy(item, folder / item.name)
        if name != "llama":
            write_legacy_config(folder / "config.json")


def write_legacy_config(path: Path):
    """Rewrites a config.json the way checkpoints on the hub have it (written by transformers 4.x):
    rope_theta / rope_scaling at the top level and torch_dtype, so both forms are under test."""
    config = json.loads(path.read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = rope
    config["torch_dtype"] = config.pop("dtype")
    write_json(path, config)


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="fixture folder (inside the build tree)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = parser.parse_args()
    out = Path(args.out)
    stamp = stamp_of_inputs()
    stamp_file = out / ".stamp"
    if not args.force and stamp_file.exists() and stamp_file.read_text() == stamp:
        print(f"fixtures in {out} are up to date")
        return
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    train_bpe(out / "tokenizers" / "bpe")
    train_sentencepiece(out / "tokenizers" / "sentencepiece")
    make_models(out / "models", out / "tokenizers")
    for script in REFERENCE_SCRIPTS:
        print(f"running {script.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, str(script), "--fixtures", str(out)], check=True)
    stamp_file.write_text(stamp)
    print(f"fixtures written to {out}")


if __name__ == "__main__":
    main()
