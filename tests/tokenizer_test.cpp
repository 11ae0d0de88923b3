// Tokenizers against Hugging Face: ids, decoded text and special ids for every line of
// tests/data/multilingual.txt plus edge cases (oracle: tests/reference/tokenizer_ids.py, which runs
// transformers.AutoTokenizer, tokenizers and sentencepiece on the fixture folders).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/tokenizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

using json = nlohmann::json;
const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kReference = kFixtures + "/reference/tokenizer/";

json reference(const std::string& name) { return json::parse(read_file(kReference + name + ".json")); }

// Appended piece by piece: GCC 12 warns falsely (-Wstringop-overflow) on "\"" + a temporary string.
std::string show(const std::string& text) {
  std::string out = "\"";
  out.append(text, 0, 120);
  out += '"';
  return out;
}

std::string show(const std::vector<int64_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 40; ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + (ids.size() > 40 ? ", ...]" : "]");
}

// Compares one output per text against the oracle's `key`; one failure naming the count and the first.
template <typename Compute>
void expect_all_equal(const json& want, const std::string& key, const std::string& what, Compute compute) {
  const auto& texts = want["texts"];
  const auto corpus_lines = want["corpus_lines"].get<size_t>();
  size_t mismatches = 0, corpus_mismatches = 0;
  std::string first;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto expected = want[key][i];
    auto got = compute(texts[i].get<std::string>(), i);
    if (json(got) == expected) continue;
    ++mismatches;
    if (i < corpus_lines) ++corpus_mismatches;
    if (first.empty()) {
      std::string input = texts[i].get<std::string>();
      first = (i < corpus_lines ? "corpus line " + std::to_string(i + 1) : "extra case " + std::to_string(i - corpus_lines)) +
              " " + show(input) + ": want " + expected.dump().substr(0, 300) + ", got " + json(got).dump().substr(0, 300);
    }
  }
  EXPECT_EQ(mismatches, 0u) << what << " (" << want["library"].get<std::string>() << "): " << mismatches << " of "
                            << texts.size() << " texts differ (" << corpus_mismatches << " corpus lines); first: " << first;
}

void expect_same_ids_and_text(const json& want, const Tokenizer& tokenizer, const std::string& name) {
  const Tokenizer* t = &tokenizer;
  expect_all_equal(want, "ids", name + " ids", [&](const std::string& text, size_t) { return t->encode(text); });
  expect_all_equal(want, "ids_with_special", name + " ids with special tokens",
                   [&](const std::string& text, size_t) { return t->encode(text, true); });
  expect_all_equal(want, "decoded", name + " decode", [&](const std::string&, size_t i) {
    return t->decode(want["ids"][i].get<std::vector<int64_t>>());
  });
  expect_all_equal(want, "decoded_with_special", name + " decode with special tokens", [&](const std::string&, size_t i) {
    return t->decode(want["ids_with_special"][i].get<std::vector<int64_t>>());
  });
  expect_all_equal(want, "decoded_skip_special", name + " decode skipping special tokens", [&](const std::string&, size_t i) {
    return t->decode(want["ids_with_special"][i].get<std::vector<int64_t>>(), true);
  });
  EXPECT_EQ(tokenizer.vocab_size(), want["vocab_size"].get<int64_t>());
}

void expect_parity(const std::string& name) {
  SCOPED_TRACE(name);
  json want = reference(name);
  auto tokenizer = Tokenizer::load(kFixtures + "/" + want["folder"].get<std::string>());
  expect_same_ids_and_text(want, *tokenizer, name);
  auto id_or_null = [](std::optional<int64_t> id) { return id ? json(*id) : json(nullptr); };
  EXPECT_EQ(id_or_null(tokenizer->bos_id()), want["bos_id"]);
  EXPECT_EQ(id_or_null(tokenizer->eos_id()), want["eos_id"]);
  EXPECT_EQ(id_or_null(tokenizer->pad_id()), want["pad_id"]);
  for (const auto& [token, id] : want["token_to_id"].items()) EXPECT_EQ(tokenizer->token_to_id(token), id.get<int64_t>()) << token;
  EXPECT_EQ(tokenizer->token_to_id("no such token in the vocabulary"), std::nullopt);
}

TEST(Tokenizer, ByteLevelBpeMatchesTransformers) { expect_parity("bpe"); }
TEST(Tokenizer, Qwen2ModelFolderMatchesTransformers) { expect_parity("qwen2"); }
TEST(Tokenizer, SentencePieceMatchesTransformersLlamaTokenizer) { expect_parity("sentencepiece"); }
TEST(Tokenizer, LlamaModelFolderMatchesTransformers) { expect_parity("llama"); }
TEST(Tokenizer, MistralModelFolderMatchesLlamaTokenizer) { expect_parity("mistral"); }

// A Llama-2 / Mistral folder with tokenizer.json and no tokenizer.model (BPE with byte fallback, spaces as "▁"):
// the sentencepiece fixture converted by transformers, under LlamaTokenizer's own pipeline (prepend "first", and
// "always" with legacy) and under the file's (Llama-2's Prepend + Replace normalizers; an older Metaspace with
// split and its decoder; that without a decoder, whose tokens are joined with spaces). Whole corpus lines are single
// words here, so the heap merge (merge_long_word) runs.
TEST(Tokenizer, SentencePieceStyleTokenizerJsonMatchesTransformers) {
  for (const char* name : {"llama_class", "llama_class_legacy", "llama2_file", "metaspace_file", "no_decoder_file"})
    expect_parity(std::string("spm_json/") + name);
}

// The bpe fixture rewritten by the oracle: GPT-2's ByteLevel regex with add_prefix_space and an eos
// template; Llama-3's ignore_merges with a Sequence post-processor; added tokens with lstrip, rstrip,
// single_word and normalized; SmolLM's Digits (one by one, and in runs) before GPT-2's regex.
TEST(Tokenizer, BpeVariantsMatchTokenizersLibrary) {
  for (const char* name : {"gpt2_style", "llama3_style", "smollm_style", "digit_runs"}) {
    SCOPED_TRACE(name);
    json want = reference(std::string("variants/") + name);
    auto tokenizer = Tokenizer::load(kFixtures + "/" + want["folder"].get<std::string>());
    expect_same_ids_and_text(want, *tokenizer, name);
  }
}

TEST(Tokenizer, ByteLevelBpeMatchesTokenizersLibrary) {
  json want = reference("bpe_tokenizers");
  auto tokenizer = Tokenizer::load(kFixtures + "/tokenizers/bpe");
  expect_all_equal(want, "ids", "bpe ids", [&](const std::string& t, size_t) { return tokenizer->encode(t); });
  expect_all_equal(want, "decoded", "bpe decode", [&](const std::string&, size_t i) {
    return tokenizer->decode(want["ids"][i].get<std::vector<int64_t>>());
  });
  EXPECT_EQ(tokenizer->vocab_size(), want["vocab_size"].get<int64_t>());
}

// Byte-level BPE loses nothing but the normalisation: decode(encode(x)) is x for every NFC text.
// (The corpus's NFD line comes back composed, as it does from HF.)
TEST(Tokenizer, ByteLevelBpeRoundTripsNfcText) {
  json want = reference("bpe");
  auto tokenizer = Tokenizer::load(kFixtures + "/tokenizers/bpe");
  size_t failures = 0;
  std::string first;
  for (size_t i = 0; i < want["texts"].size(); ++i) {
    std::string text = want["texts"][i];
    std::string nfc = want["decoded"][i];  // HF's decode of HF's ids: the NFC form of the text
    if (tokenizer->decode(tokenizer->encode(text)) != nfc && failures++ == 0) first = show(text);
    if (tokenizer->decode(tokenizer->encode(nfc)) != nfc && failures++ == 0) first = show(nfc);
  }
  EXPECT_EQ(failures, 0u) << "first: " << first;
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("e\xCC\x81")), "\xC3\xA9");  // NFD e + acute -> é
}

// sentencepiece through HF drops one leading space on decode (Metaspace adds none to a text that starts
// with a space, Strip removes one), so the round trip is exact where HF's is.
TEST(Tokenizer, SentencePieceRoundTripsWhereTransformersDoes) {
  json want = reference("sentencepiece");
  auto tokenizer = Tokenizer::load(kFixtures + "/tokenizers/sentencepiece");
  size_t exact = 0;
  for (size_t i = 0; i < want["texts"].size(); ++i) {
    std::string text = want["texts"][i];
    std::string round_trip = tokenizer->decode(tokenizer->encode(text));
    EXPECT_EQ(round_trip, want["decoded"][i].get<std::string>()) << show(text);
    if (round_trip == text) ++exact;
  }
  EXPECT_GT(exact, want["texts"].size() * 9 / 10);
}

TEST(Tokenizer, SpecialTokensInTextAreSingleIds) {
  auto bpe = Tokenizer::load(kFixtures + "/tokenizers/bpe");
  auto ids = bpe->encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), *bpe->token_to_id("<|im_start|>"));
  EXPECT_EQ(ids.back(), *bpe->token_to_id("<|im_end|>"));
  EXPECT_EQ(bpe->decode(ids, true), "user\nhi");

  auto spm = Tokenizer::load(kFixtures + "/tokenizers/sentencepiece");
  auto with_bos = spm->encode("hello", true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), *spm->bos_id());  // add_bos_token: true
  EXPECT_EQ(spm->encode("hello</s>").back(), *spm->eos_id());
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  auto bpe = Tokenizer::load(kFixtures + "/tokenizers/bpe");
  auto spm = Tokenizer::load(kFixtures + "/tokenizers/sentencepiece");
  EXPECT_THROW(bpe->encode("caf\xE9"), Error);
  EXPECT_THROW(spm->encode("\xFF\xFE"), Error);
  EXPECT_THROW(bpe->decode({1 << 30}), Error);
  EXPECT_THROW(spm->decode({-1}), Error);
}

// Each bad folder: a one-line Error that names `names`.
template <typename Setup>
void expect_load_error(Setup setup, const std::string& fragment) {
  testing::TempDir dir;
  setup(dir);
  try {
    Tokenizer::load(dir.path().string());
    ADD_FAILURE() << "expected an error mentioning " << fragment;
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(Tokenizer, BadFoldersAreErrorsNamingTheFile) {
  const std::string bpe_json = read_file(kFixtures + "/tokenizers/bpe/tokenizer.json");
  expect_load_error([](auto&) {}, "no tokenizer.model or tokenizer.json");
  expect_load_error([&](auto& d) { testing::write_text(d.file("tokenizer.json"), bpe_json.substr(0, bpe_json.size() / 2)); },
                    "tokenizer.json: not valid JSON (at byte");
  expect_load_error([&](auto& d) {
    json document = json::parse(bpe_json);
    document["model"]["type"] = "WordPiece";
    testing::write_text(d.file("tokenizer.json"), document.dump());
  }, "model type \"WordPiece\" is not supported");
  expect_load_error([&](auto& d) {
    json document = json::parse(bpe_json);
    document["normalizer"] = {{"type", "Lowercase"}};
    testing::write_text(d.file("tokenizer.json"), document.dump());
  }, "normalizer type \"Lowercase\"");
  expect_load_error([&](auto& d) {
    json document = json::parse(bpe_json);
    document["decoder"] = nullptr;
    testing::write_text(d.file("tokenizer.json"), document.dump());
  }, "a byte-level pre_tokenizer with a decoder other than ByteLevel");
  expect_load_error([&](auto& d) {
    json document = json::parse(bpe_json);
    document["pre_tokenizer"] = nullptr;  // not byte-level, and no byte_fallback either
    testing::write_text(d.file("tokenizer.json"), document.dump());
  }, "neither byte-level BPE");
  expect_load_error([&](auto& d) {
    testing::write_text(d.file("tokenizer.json"), bpe_json);
    testing::write_text(d.file("tokenizer_config.json"), "{\"eos_token\": ");
  }, "tokenizer_config.json: not valid JSON");
  expect_load_error([](auto& d) { testing::write_text(d.file("tokenizer.model"), "not a protobuf"); },
                    "tokenizer.model: not a sentencepiece model");
  EXPECT_THROW(Tokenizer::load("/nonexistent/model"), Error);
}

TEST(Tokenizer, MergesAsStringsOrPairsGiveTheSameIds) {
  json document = json::parse(read_file(kFixtures + "/tokenizers/bpe/tokenizer.json"));
  json& merges = document["model"]["merges"];
  for (auto& merge : merges)
    if (merge.is_array()) merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
  testing::TempDir dir;
  testing::write_text(dir.file("tokenizer.json"), document.dump());
  auto strings = Tokenizer::load(dir.path().string());
  auto pairs = Tokenizer::load(kFixtures + "/tokenizers/bpe");
  for (const char* text : {"The quick brown fox", "안녕하세요 세계", "x = 12345;  y"})
    EXPECT_EQ(strings->encode(text), pairs->encode(text)) << text;
}

// Llama-3's ignore_merges: a pre-token that is a vocabulary entry is one id even when the merges would
// not build it.
TEST(Tokenizer, IgnoreMergesEmitsWholeVocabularyWords) {
  json document = json::parse(read_file(kFixtures + "/tokenizers/bpe/tokenizer.json"));
  document["model"]["vocab"]["zzzz"] = 5000;
  testing::TempDir plain, ignoring;
  testing::write_text(plain.file("tokenizer.json"), document.dump());
  document["model"]["ignore_merges"] = true;
  testing::write_text(ignoring.file("tokenizer.json"), document.dump());
  EXPECT_NE(Tokenizer::load(plain.path().string())->encode("zzzz"), std::vector<int64_t>{5000});
  EXPECT_EQ(Tokenizer::load(ignoring.path().string())->encode("zzzz"), std::vector<int64_t>{5000});
}

}  // namespace
}  // namespace autotrain

namespace autotrain {
namespace {

TEST(Tokenizer, SentencePieceWinsWhenBothFilesArePresent) {
  testing::TempDir dir;
  for (const char* name : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    testing::write_text(dir.file(name), read_file(kFixtures + "/tokenizers/sentencepiece/" + name));
  testing::write_text(dir.file("tokenizer.json"), read_file(kFixtures + "/tokenizers/bpe/tokenizer.json"));
  auto both = Tokenizer::load(dir.path().string());
  auto spm = Tokenizer::load(kFixtures + "/tokenizers/sentencepiece");
  EXPECT_EQ(both->encode("Hello world 123", true), spm->encode("Hello world 123", true));
}

// transformers' clean_up_tokenization, when tokenizer_config.json asks for it (older GPT-2 style configs).
TEST(Tokenizer, DecodeCleansUpSpacesWhenConfigured) {
  testing::TempDir dir;
  testing::write_text(dir.file("tokenizer.json"), read_file(kFixtures + "/tokenizers/bpe/tokenizer.json"));
  testing::write_text(dir.file("tokenizer_config.json"), "{\"clean_up_tokenization_spaces\": true}");
  auto tokenizer = Tokenizer::load(dir.path().string());
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("I do n't know . ok ? yes !")), "I don't know. ok? yes!");
}

}  // namespace
}  // namespace autotrain
