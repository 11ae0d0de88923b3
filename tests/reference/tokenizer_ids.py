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

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(folders["sentencepiece"] / "tokenizer.model"))
    pieces = [sp.encode(t) for t in texts]
    (out / "sentencepiece_raw.json").write_text(json.dumps({
        "library": "sentencepiece.SentencePieceProcessor", "corpus_lines": len(corpus), "texts": texts,
        "ids": pieces, "decoded": [sp.decode(i) for i in pieces]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
