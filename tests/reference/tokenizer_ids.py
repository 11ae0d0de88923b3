#!/usr/bin/env python3
"""Oracle for the tokenizers: token ids and decoded text from Hugging Face for every line of
tests/data/multilingual.txt plus hand-written edge cases, for the fixture tokenizers and model folders.
Writes reference/tokenizer/<name>.json:

  <folder name>.json           transformers.AutoTokenizer.from_pretrained(folder) -- what the C++ must match;
                               for models/mistral, LlamaTokenizer.from_pretrained (the class its
                               tokenizer_config.json names): transformers 5.23 maps model_type "mistral"
                               without a tokenizer.json to a generic TokenizersBackend conversion of
                               tokenizer.model that drops sentencepiece's dummy-prefix "▁" (so "The" becomes
                               "T" "he"), which neither sentencepiece nor the model's training did
  bpe_tokenizers.json          tokenizers.Tokenizer.from_file(tokenizers/bpe/tokenizer.json)
  sentencepiece_raw.json       sentencepiece.SentencePieceProcessor (no HF rules), for information
  variants/<name>/tokenizer.json + variants/<name>.json
                               the bpe fixture rewritten to reach the rest of the pipeline (GPT-2's
                               ByteLevel regex with add_prefix_space, SmolLM's Digits before it (and digit
                               runs), Llama-3's ignore_merges, post-processor
                               templates, added tokens with lstrip / rstrip / single_word / normalized), with
                               the ids and decoded text of tokenizers.Tokenizer

Invalid UTF-8 has no case here: HF's Rust tokenizers take `str`, so they cannot be given it; the C++
tokenizer rejects it with an Error (and so does the dataset reader before it).
"""
import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "multilingual.txt"

EXTRA_CASES = [
    "",
    " ",
    "     ",
    "\n\n\n",
    "\t",
    "\t\tindented\twith\ttabs\t",
    "a" * 2000,
    "supercalifragilistic" * 100,
    "e" * 101,  # odd runs of letters that merge with themselves ("e e", "s s" in the fixtures' merges), longer than
    "s" * 67,   # 64 symbols: the heap merge must take the leftmost pair first ("ee ee ... e", not "e ee ... ee")
    "sssss ssssss ee eee",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>",
    "hello<|im_end|>world",
    "  <|im_start|>  spaced  <|im_end|>  ",
    "<s> hello </s>",
    "<s>hello</s>",
    "</s>hi",
    " <s>",
    "<unk> unknown",
    " leading space",
    "trailing space ",
    "  multiple   spaces   here",
    "digits 1234567890 and 3.14159 and 2024-06-01",
    "中文字符测试 日本語のテキスト 한국어 문장",
    "emoji 😀👍🏽👨\u200d👩\u200d👧 flags 🇰🇷",
    "Cafe\u0301 e\u0301le\u0300ve",
    "\r\nwindows\r\nline ends\r\n",
    "don't I'LL we've THEY'RE it's",
    "mixed中文English한국어123",
    "▁already▁has▁metaspace",
    "<0x41> byte-like text",
]


def read_corpus():
    lines = CORPUS.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def hf_record(folder, texts, corpus_lines, fixtures, tokenizer_class=None):
    from transformers import AutoTokenizer
    tok = (tokenizer_class or AutoTokenizer).from_pretrained(str(folder))
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    ids_special = [tok.encode(t, add_special_tokens=True) for t in texts]
    special_names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "hello", "Ġthe", "▁the"]
    return {
        "folder": str(folder.relative_to(fixtures)),
        "library": f"transformers.{'AutoTokenizer' if tokenizer_class is None else tokenizer_class.__name__} "
                   f"({type(tok).__name__})",
        "corpus_lines": corpus_lines,
        "texts": texts,
        "ids": ids,
        "ids_with_special": ids_special,
        "decoded": [tok.decode(i) for i in ids],
        "decoded_with_special": [tok.decode(i) for i in ids_special],
        "decoded_skip_special": [tok.decode(i, skip_special_tokens=True) for i in ids_special],
        "vocab_size": len(tok),
        "bos_id": tok.bos_token_id,
        "eos_id": tok.eos_token_id,
        "pad_id": tok.pad_token_id,
        "token_to_id": {name: tok.convert_tokens_to_ids(name) for name in special_names
                        if name in tok.get_vocab()},
    }


VARIANT_CASES = [
    "The quick brown fox",
    " leading space and  two",
    "call <tool> now",
    "call   <tool>   now",
    "<tool><tool>",
    "wow that is wow, but not wowza or sowow",
    "Cafe\u0301 is café, CAFÉ is not",
    "hi <|im_end|> there",
    "",
    "12345 digits",
    "안녕하세요 😀 中文",
    "in 2024 we sold 1,234.56 units at 99% (v3.11)",
    "٣٤٥ Arabic-Indic, ½ and ² and Ⅻ are numbers too",
]


def write_variants(out, bpe_json):
    """Variants of the bpe fixture, run through the `tokenizers` library."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors

    def record(name, tokenizer):
        folder = out / "variants" / name
        folder.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(folder / "tokenizer.json"))
        ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in VARIANT_CASES]
        ids_special = [tokenizer.encode(t, add_special_tokens=True).ids for t in VARIANT_CASES]
        (out / "variants" / f"{name}.json").write_text(json.dumps({
            "library": "tokenizers.Tokenizer", "folder": f"reference/tokenizer/variants/{name}",
            "corpus_lines": 0, "texts": VARIANT_CASES, "ids": ids, "ids_with_special": ids_special,
            "decoded": [tokenizer.decode(i, skip_special_tokens=False) for i in ids],
            "decoded_with_special": [tokenizer.decode(i, skip_special_tokens=False) for i in ids_special],
            "decoded_skip_special": [tokenizer.decode(i, skip_special_tokens=True) for i in ids_special],
            "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True)}, ensure_ascii=False))

    added = [AddedToken("<tool>", lstrip=True, rstrip=True, special=True, normalized=False),
             AddedToken("wow", single_word=True, special=False, normalized=True),
             AddedToken("café", special=False, normalized=True)]

    gpt2 = Tokenizer.from_file(str(bpe_json))
    gpt2.normalizer = None
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    gpt2.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>",
                                                        special_tokens=[("<|endoftext|>", 0)])
    gpt2.add_tokens(added)
    record("gpt2_style", gpt2)

    llama3 = Tokenizer.from_file(str(bpe_json))
    document = json.loads(llama3.to_str())
    document["model"]["ignore_merges"] = True
    document["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in document["model"]["merges"]]
    llama3 = Tokenizer.from_str(json.dumps(document))
    llama3.normalizer = normalizers.Sequence([normalizers.NFC()])
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])])
    llama3.add_special_tokens([AddedToken("<tool>", lstrip=True, rstrip=False, special=True, normalized=False)])
    llama3.add_tokens(added[1:])
    record("llama3_style", llama3)

    # SmolLM / StarCoder: digits split off one by one before GPT-2's byte-level regex; and in runs. Their BPE is
    # trained with GPT-2's regex alone on the corpus and numbers, so that it has merges of digits ("20", "Ġ1", ...)
    # which the Digits step then keeps apart: without that step, or with the other setting, the ids differ.
    from tokenizers import models, trainers
    numbers = [f"in {1900 + i} it cost {i * 37 % 1000}.{i % 100:02d} and {i * 12345 % 99991} units" for i in range(400)]
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trained.decoder = Tokenizer.from_file(str(bpe_json)).decoder
    trained.train_from_iterator(read_corpus() + numbers, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    for name, individual in (("smollm_style", True), ("digit_runs", False)):
        digits = Tokenizer.from_str(trained.to_str())
        digits.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=individual),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        record(name, digits)


def write_sentencepiece_json(out, sentencepiece, texts, corpus_lines, fixtures):
    """Llama-2 / Mistral folders that carry tokenizer.json (BPE with byte fallback, spaces as "▁") and no
    tokenizer.model: the sentencepiece fixture converted by transformers (LlamaTokenizer.save_pretrained), recorded
    through AutoTokenizer. With tokenizer_class LlamaTokenizer transformers sets its own pipeline (Metaspace "first",
    or "always" with legacy: true); with PreTrainedTokenizerFast the file's is used as it is: Llama-2's original one
    (Prepend + Replace normalizers, no pre-tokenizer), an older Metaspace(split=true) with its own decoder, and that
    without a decoder (tokenizers then joins the tokens with spaces)."""
    import shutil
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizer
    converted = out / "spm_json" / "converted"
    if converted.exists():
        shutil.rmtree(converted)
    LlamaTokenizer.from_pretrained(str(sentencepiece)).save_pretrained(str(converted))
    document = json.loads((converted / "tokenizer.json").read_text())
    config = json.loads((sentencepiece / "tokenizer_config.json").read_text())
    llama2 = dict(document, normalizer={"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        pre_tokenizer=None)
    metaspace = dict(document, pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                                              "split": True},
                     decoder={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True})
    cases = {"llama_class": (document, dict(config, legacy=False)),
             "llama_class_legacy": (document, dict(config, legacy=True)),
             "llama2_file": (llama2, dict(config, tokenizer_class="PreTrainedTokenizerFast")),
             "metaspace_file": (metaspace, dict(config, tokenizer_class="PreTrainedTokenizerFast")),
             "no_decoder_file": (dict(metaspace, decoder=None), dict(config, tokenizer_class="PreTrainedTokenizerFast"))}
    for name, (tokenizer_json, tokenizer_config) in cases.items():
        folder = out / "spm_json" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        record = hf_record(folder, texts, corpus_lines, fixtures)
        if tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast":  # the file as it is
            raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
            assert record["ids"] == [raw.encode(t, add_special_tokens=False).ids for t in texts], name
        (out / "spm_json" / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False))
    shutil.rmtree(converted)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    out = fixtures / "reference" / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    import transformers
    transformers.utils.logging.set_verbosity_error()
    corpus = read_corpus()
    texts = corpus + EXTRA_CASES

    folders = {
        "bpe": fixtures / "tokenizers" / "bpe",
        "sentencepiece": fixtures / "tokenizers" / "sentencepiece",
        "qwen2": fixtures / "models" / "qwen2",
        "llama": fixtures / "models" / "llama",
        "mistral": fixtures / "models" / "mistral",
    }
    for name, folder in folders.items():
        tokenizer_class = transformers.LlamaTokenizer if name == "mistral" else None
        record = hf_record(folder, texts, len(corpus), fixtures, tokenizer_class)
        (out / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False))

    from tokenizers import Tokenizer
    raw = Tokenizer.from_file(str(folders["bpe"] / "tokenizer.json"))
    encodings = [raw.encode(t, add_special_tokens=False).ids for t in texts]
    (out / "bpe_tokenizers.json").write_text(json.dumps({
        "library": "tokenizers.Tokenizer.from_file", "corpus_lines": len(corpus), "texts": texts,
        "ids": encodings, "decoded": [raw.decode(i, skip_special_tokens=False) for i in encodings],
        "vocab_size": raw.get_vocab_size(with_added_tokens=True)}, ensure_ascii=False))

    write_variants(out, folders["bpe"] / "tokenizer.json")
    write_sentencepiece_json(out, folders["sentencepiece"], texts, len(corpus), fixtures)

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(folders["sentencepiece"] / "tokenizer.model"))
    pieces = [sp.encode(t) for t in texts]
    (out / "sentencepiece_raw.json").write_text(json.dumps({
        "library": "sentencepiece.SentencePieceProcessor", "corpus_lines": len(corpus), "texts": texts,
        "ids": pieces, "decoded": [sp.decode(i) for i in pieces]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
