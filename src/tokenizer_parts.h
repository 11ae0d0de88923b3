// Pieces shared by the two tokenizer implementations (src/bpe_tokenizer.cpp, src/sentencepiece_tokenizer.cpp):
// HF's added-token vocabulary, tokenizer_config.json, UTF-8 helpers. Internal to src/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "autotrain/tokenizer.h"

namespace autotrain::tokenization {

// One entry of tokenizer.json's "added_tokens" / tokenizer_config.json's "added_tokens_decoder".
struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;  // matched against the normalised text instead of the raw text
};

// HF's AddedVocabulary: finds added tokens in a text the way `tokenizers` does (leftmost-longest match,
// single_word / lstrip / rstrip) and splits the text around them.
class AddedVocabulary {
 public:
  struct Piece {
    std::string_view text;
    size_t offset;                 // byte offset of `text` in the string given to split()
    std::optional<int64_t> id;     // set when the piece is an added token
  };

  // A token whose content is already present is replaced (HF keeps one entry per content).
  void add(const AddedToken& token);
  // Splits `text` on the tokens whose `normalized` flag is `normalized`; the pieces cover the text.
  std::vector<Piece> split(std::string_view text, bool normalized) const;
  const AddedToken* find(int64_t id) const;
  std::optional<int64_t> id_of(const std::string& content) const;
  bool has_normalized_tokens() const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int64_t, size_t> by_id_;
  std::vector<size_t> candidates_[2][256];  // [normalized][first byte]: token indices, longest first

  void index_candidate(size_t index);
};

// tokenizer_config.json, with special_tokens_map.json filling in the special tokens it does not name.
struct TokenizerConfig {
  std::string path;  // for messages; empty when the folder has no tokenizer_config.json
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token, legacy, add_prefix_space, clean_up_tokenization_spaces;
  std::string tokenizer_class;                           // "LlamaTokenizer", ...; empty when not given
  std::vector<AddedToken> added_tokens_decoder;          // with their ids
  std::vector<std::string> additional_special_tokens;    // additional_special_tokens / extra_special_tokens
  nlohmann::json chat_template;                          // as written (a string or named templates); null if none
};
TokenizerConfig read_tokenizer_config(const std::string& model_dir);

// A model folder's JSON file (parse_json_file, whose advice is to copy it again from the base model).
nlohmann::json read_json_file(const std::string& path);

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json, const TokenizerConfig& config);
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& tokenizer_model,
                                                        const TokenizerConfig& config);

// Throws Error when `text` is not valid UTF-8 (the tokenizers take only valid UTF-8).
void require_utf8(std::string_view text);
// Rust's String::from_utf8_lossy: every maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);
// Every occurrence of `from` replaced by `to`, left to right; only the first max_count when it is >= 0 (Python's
// str.replace count). An empty `from` leaves the text as it is.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to, int64_t max_count = -1);
// transformers' clean_up_tokenization (" ." -> ".", " n't" -> "n't", ...), applied by decode() when
// tokenizer_config.json sets clean_up_tokenization_spaces.
std::string clean_up_tokenization(std::string text);
// The byte of a byte-fallback token "<0xXX>" (sentencepiece's and tokenizers' spelling); none for another token.
std::optional<uint8_t> byte_token_value(std::string_view token);
// tokenizers' ByteFallback decoder: each run of byte tokens becomes its UTF-8 text, or one U+FFFD per token when
// the run is not valid UTF-8; other tokens pass unchanged.
std::vector<std::string> byte_fallback(std::vector<std::string> tokens);
// Appends code point `c` as UTF-8.
void append_utf8(std::string& out, uint32_t c);

}  // namespace autotrain::tokenization
