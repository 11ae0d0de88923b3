// BPE from tokenizer.json, reproducing the `tokenizers` library's pipeline: added tokens -> normalizer ->
// pre-tokenizer -> BPE by merge rank -> post-processor template. Two kinds: byte-level BPE (GPT-2, Llama-3, Qwen2:
// a ByteLevel pre-tokenizer and decoder), and sentencepiece-style BPE with byte fallback (Llama-2 / Mistral folders
// that carry tokenizer.json without tokenizer.model: spaces become "▁" (Metaspace, or Prepend + Replace
// normalizers), unknown characters <0xXX> tokens, decoded by Replace / ByteFallback / Fuse / Strip).
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/bytestream.h>
#include <unicode/utf8.h>

#include "autotrain/error.h"
#include "tokenizer_parts.h"

namespace autotrain::tokenization {
namespace {
using json = nlohmann::json;

// GPT-2's pre-tokenizer pattern: what ByteLevel(use_regex=true) splits with.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 onwards, so that
// every byte is one visible character of the vocabulary.
struct ByteAlphabet {
  std::array<std::string, 256> byte_to_text;
  std::unordered_map<UChar32, uint8_t> char_to_byte;

  ByteAlphabet() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      UChar32 c = printable ? b : next++;
      append_utf8(byte_to_text[b], static_cast<uint32_t>(c));
      char_to_byte[c] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// A PCRE2 pattern compiled with UTF + UCP, so \p{L}, \s and \w are Unicode-aware like Oniguruma's.
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& file) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                          &error, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      throw Error(file + ": pre_tokenizer regex does not compile at offset " + std::to_string(offset) + " (" +
                  reinterpret_cast<char*>(message) + "): " + pattern);
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches, left to right, as [start, end) byte ranges. The text is valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> matches;
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t position = 0;
    while (position <= text.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), position,
                           PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* range = pcre2_get_ovector_pointer(data);
      if (range[1] == range[0]) {  // an empty match: step over one character
        position = range[0] + 1;
        while (position < text.size() && (static_cast<uint8_t>(text[position]) & 0xC0) == 0x80) ++position;
        continue;
      }
      matches.emplace_back(range[0], range[1]);
      position = range[1];
    }
    pcre2_match_data_free(data);
    return matches;
  }

 private:
  pcre2_code* code_ = nullptr;
};

const char kMetaspace[] = "\xE2\x96\x81";  // "▁", sentencepiece's space

// The `{"String": ...}` pattern of a Replace step (a Regex one is refused).
std::string string_pattern(const json& spec, const std::string& file, const std::string& what) {
  const json& pattern = spec.value("pattern", json::object());
  if (pattern.contains("String") && pattern["String"].is_string()) return pattern["String"].get<std::string>();
  throw Error(file + ": " + what + " Replace with a " + pattern.dump() + " pattern is not supported (only "
              "{\"String\": ...})");
}

// tokenizer.json "normalizer": null, NFC / NFD / NFKC / NFKD, Prepend, Replace (a string), or a Sequence of those.
class Normalizer {
 public:
  Normalizer(const json& spec, const std::string& file) { add(spec, file); }

  std::string apply(std::string_view text) const {
    std::string current(text);
    for (const Step& step : steps_) {
      if (step.form) {
        std::string out;
        icu::StringByteSink<std::string> sink(&out);
        UErrorCode status = U_ZERO_ERROR;
        step.form->normalizeUTF8(0, icu::StringPiece(current.data(), static_cast<int32_t>(current.size())), sink,
                                 nullptr, status);
        if (U_FAILURE(status))
          throw Error(std::string("tokenizer: Unicode normalisation failed: ") + u_errorName(status));
        current = std::move(out);
      } else if (step.prepend) {
        if (!current.empty()) current.insert(0, step.content);  // tokenizers' Prepend leaves "" alone
      } else {
        current = replace_all(current, step.pattern, step.content);
      }
    }
    return current;
  }

  void clear() { steps_.clear(); }

 private:
  struct Step {
    const icu::Normalizer2* form = nullptr;  // a Unicode normal form, else:
    bool prepend = false;                    // Prepend(content), else Replace(pattern -> content)
    std::string pattern, content;
  };
  std::vector<Step> steps_;

  void add(const json& spec, const std::string& file) {
    if (spec.is_null()) return;
    std::string type = spec.value("type", "");
    if (type == "Sequence") {
      for (const auto& item : spec.value("normalizers", json::array())) add(item, file);
      return;
    }
    Step step;
    if (type == "Prepend") {
      step.prepend = true;
      step.content = spec.value("prepend", "");
      steps_.push_back(step);
      return;
    }
    if (type == "Replace") {
      step.pattern = string_pattern(spec, file, "normalizer");
      step.content = spec.value("content", "");
      steps_.push_back(step);
      return;
    }
    UErrorCode status = U_ZERO_ERROR;
    if (type == "NFC") step.form = icu::Normalizer2::getNFCInstance(status);
    else if (type == "NFD") step.form = icu::Normalizer2::getNFDInstance(status);
    else if (type == "NFKC") step.form = icu::Normalizer2::getNFKCInstance(status);
    else if (type == "NFKD") step.form = icu::Normalizer2::getNFKDInstance(status);
    else
      throw Error(file + ": normalizer type \"" + type + "\" is not supported (supported: NFC, NFD, NFKC, NFKD, "
                  "Prepend, Replace, Sequence)");
    if (U_FAILURE(status)) throw Error(file + ": ICU has no " + type + " data: " + u_errorName(status));
    steps_.push_back(step);
  }
};

// Metaspace's prepend_scheme: where a "▁" goes in front of a piece that does not start with one.
enum class Prepend { kNever, kFirst, kAlways };

// tokenizer.json "pre_tokenizer": Split(regex or string, Isolated / Removed), ByteLevel, Digits, Metaspace, or a
// Sequence of those.
class PreTokenizer {
 public:
  PreTokenizer(const json& spec, const std::string& file) { add(spec, file); }

  // Splits normalised text into words (byte-level: each mapped through the byte alphabet). at_start: the text
  // begins the string given to encode (Metaspace's "first" prepends only there).
  std::vector<std::string> apply(std::string_view text, bool at_start) const {
    std::vector<std::pair<std::string, bool>> pieces{{std::string(text), at_start}};  // (piece, begins the text)
    for (const Step& step : steps_) {
      std::vector<std::pair<std::string, bool>> next;
      for (auto& [piece, first] : pieces) {
        if (piece.empty()) continue;  // `tokenizers` drops empty splits before each step
        if (step.prefix_space && piece[0] != ' ') piece.insert(piece.begin(), ' ');
        if (step.metaspace) {
          metaspace(step, piece, first, next);
          continue;
        }
        if (!step.regex) {
          next.emplace_back(std::move(piece), first);
          continue;
        }
        size_t last = 0;
        for (auto [start, end] : step.regex->find_all(piece)) {
          if (start > last) next.emplace_back(piece.substr(last, start - last), first && last == 0);
          if (!step.remove_matches) next.emplace_back(piece.substr(start, end - start), first && start == 0);
          last = end;
        }
        if (last < piece.size()) next.emplace_back(piece.substr(last), first && last == 0);
      }
      pieces = std::move(next);
    }
    std::vector<std::string> words;
    words.reserve(pieces.size());
    for (auto& [piece, first] : pieces) {
      if (piece.empty()) continue;
      if (!byte_level_) {
        words.push_back(std::move(piece));
        continue;
      }
      std::string word;
      for (unsigned char byte : piece) word += byte_alphabet().byte_to_text[byte];
      words.push_back(std::move(word));
    }
    return words;
  }

  bool byte_level() const { return byte_level_; }

  // transformers' LlamaTokenizer: its own Metaspace(prepend, split=false) in place of the file's pre-tokenizer.
  void use_metaspace(Prepend prepend) {
    steps_.clear();
    Step step;
    step.metaspace = true;
    step.prepend = prepend;
    steps_.push_back(step);
  }

 private:
  struct Step {
    std::shared_ptr<Regex> regex;  // null: no split
    bool remove_matches = false;   // Split behavior Removed (else Isolated)
    bool prefix_space = false;     // ByteLevel add_prefix_space
    bool metaspace = false;        // Metaspace: spaces -> replacement, prepended as `prepend` says
    std::string replacement = kMetaspace;
    Prepend prepend = Prepend::kAlways;
    bool split = false;  // Metaspace split: a piece before each replacement (merged with what follows it)
  };
  std::vector<Step> steps_;
  bool byte_level_ = false;

  static void metaspace(const Step& step, std::string& piece, bool first,
                        std::vector<std::pair<std::string, bool>>& next) {
    piece = replace_all(piece, " ", step.replacement);
    const bool starts = piece.compare(0, step.replacement.size(), step.replacement) == 0;
    if (!starts && (step.prepend == Prepend::kAlways || (step.prepend == Prepend::kFirst && first)))
      piece.insert(0, step.replacement);
    if (!step.split) {
      next.emplace_back(std::move(piece), first);
      return;
    }
    size_t start = 0;  // tokenizers' MergedWithNext: "a▁▁b" -> "a", "▁", "▁b"
    for (size_t at = piece.find(step.replacement, 1); at != std::string::npos;
         at = piece.find(step.replacement, at + 1)) {
      if (at > start) next.emplace_back(piece.substr(start, at - start), first && start == 0);
      start = at;
    }
    next.emplace_back(piece.substr(start), first && start == 0);
  }

  void add(const json& spec, const std::string& file) {
    if (spec.is_null()) return;
    std::string type = spec.value("type", "");
    if (type == "Sequence") {
      for (const auto& item : spec.value("pretokenizers", json::array())) add(item, file);
    } else if (type == "ByteLevel") {
      byte_level_ = true;
      Step step;
      step.prefix_space = spec.value("add_prefix_space", true);
      if (spec.value("use_regex", true)) step.regex = std::make_shared<Regex>(kGpt2Pattern, file);
      steps_.push_back(step);
    } else if (type == "Split") {
      add_split(spec, file);
    } else if (type == "Digits") {
      // tokenizers' Digits: numbers isolated (Rust's char::is_numeric, Unicode's N categories), one a piece with
      // individual_digits (SmolLM's and StarCoder's tokenizers), else in runs.
      Step step;
      step.regex = std::make_shared<Regex>(spec.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", file);
      steps_.push_back(step);
    } else if (type == "Metaspace") {
      Step step;
      step.metaspace = true;
      step.replacement = spec.value("replacement", std::string(kMetaspace));
      std::string scheme = spec.value("prepend_scheme", "");
      if (scheme.empty()) scheme = spec.value("add_prefix_space", true) ? "always" : "never";  // older files
      if (scheme == "always") step.prepend = Prepend::kAlways;
      else if (scheme == "first") step.prepend = Prepend::kFirst;
      else if (scheme == "never") step.prepend = Prepend::kNever;
      else throw Error(file + ": Metaspace prepend_scheme \"" + scheme + "\" is not always, first or never");
      step.split = spec.value("split", true);
      if (step.replacement.empty()) throw Error(file + ": Metaspace has an empty replacement");
      steps_.push_back(step);
    } else {
      throw Error(file + ": pre_tokenizer type \"" + type + "\" is not supported (supported: Split, ByteLevel, "
                  "Digits, Metaspace, Sequence)");
    }
  }

  void add_split(const json& spec, const std::string& file) {
    if (spec.value("invert", false)) throw Error(file + ": Split pre_tokenizer with invert=true is not supported");
    std::string behavior = spec.value("behavior", "");
    if (behavior != "Isolated" && behavior != "Removed")
      throw Error(file + ": Split behavior \"" + behavior + "\" is not supported (supported: Isolated, Removed)");
    const json& pattern = spec.value("pattern", json::object());
    std::string regex;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      regex = pattern["Regex"].get<std::string>();
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      regex = "\\Q" + pattern["String"].get<std::string>() + "\\E";
    } else {
      throw Error(file + ": Split pre_tokenizer has no \"pattern\" {\"Regex\": ...} or {\"String\": ...}");
    }
    Step step;
    step.regex = std::make_shared<Regex>(regex, file);
    step.remove_matches = behavior == "Removed";
    steps_.push_back(step);
  }
};

uint64_t pair_key(int64_t left, int64_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right);
}

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(const json& document, const std::string& file, const TokenizerConfig& config)
      : file_(file), normalizer_(document.value("normalizer", json()), file),
        pre_tokenizer_(document.value("pre_tokenizer", json()), file) {
    const auto model = document.find("model");  // operator[] on a const json with a missing key is UB
    read_model(model != document.end() ? *model : json());
    read_added_tokens(document.value("added_tokens", json::array()));
    read_decoder(document.value("decoder", json()));
    check_kind(config);
    read_post_processor(document.value("post_processor", json()), config);
    clean_up_spaces_ = config.clean_up_tokenization_spaces.value_or(false);
    if (config.bos_token) bos_id_ = find_token(*config.bos_token);
    if (config.eos_token) eos_id_ = find_token(*config.eos_token);
    if (config.pad_token) pad_id_ = find_token(*config.pad_token);
  }

  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const override {
    require_utf8(text);
    std::vector<int64_t> ids;
    if (add_special_tokens) ids = prefix_ids_;
    for (const auto& piece : added_.split(text, false)) {
      if (piece.id) {
        ids.push_back(*piece.id);
        continue;
      }
      std::string normalized = normalizer_.apply(piece.text);
      for (const auto& part : added_.split(normalized, true)) {
        if (part.id) {
          ids.push_back(*part.id);
          continue;
        }
        const bool at_start = piece.offset == 0 && part.offset == 0;
        for (const std::string& word : pre_tokenizer_.apply(part.text, at_start)) encode_word(word, ids);
      }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
    return ids;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
    if (!pre_tokenizer_.byte_level()) return decode_chain(ids, skip_special_tokens);
    // The ByteLevel decoder: a token made of byte-alphabet characters gives those bytes; any other
    // token (an added token such as "<|im_end|>" with characters outside the alphabet) its own UTF-8.
    const auto& alphabet = byte_alphabet();
    std::string bytes;
    for (int64_t id : ids) {
      const std::string* token = nullptr;
      if (const AddedToken* added = added_.find(id)) {
        if (skip_special_tokens && added->special) continue;
        token = &added->content;
      } else if (id >= 0 && id < static_cast<int64_t>(id_to_token_.size()) && !id_to_token_[id].empty()) {
        token = &id_to_token_[id];
      } else {
        throw Error("tokenizer: id " + std::to_string(id) + " is not in the vocabulary of " + file_);
      }
      std::string token_bytes;
      const auto* s = reinterpret_cast<const uint8_t*>(token->data());
      int32_t i = 0, length = static_cast<int32_t>(token->size());
      bool mapped = true;
      while (i < length && mapped) {
        UChar32 c;
        U8_NEXT(s, i, length, c);
        auto it = alphabet.char_to_byte.find(c);
        if (it == alphabet.char_to_byte.end()) mapped = false;
        else token_bytes += static_cast<char>(it->second);
      }
      bytes += mapped ? token_bytes : *token;
    }
    std::string text = utf8_lossy(bytes);
    return clean_up_spaces_ ? clean_up_tokenization(text) : text;
  }

  int64_t vocab_size() const override { return vocab_size_; }

 protected:
  std::optional<int64_t> find_token(const std::string& token) const override {
    if (auto id = added_.id_of(token)) return id;
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }

 private:
  struct Merge {
    int64_t rank;
    int64_t merged_id;
  };

  std::string file_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  AddedVocabulary added_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int64_t> unk_id_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false, clean_up_spaces_ = false;
  bool byte_level_decoder_ = false;
  std::vector<int64_t> prefix_ids_, suffix_ids_;  // the post-processor template around the text
  // The decoder of a sentencepiece-style file, step by step over the tokens' texts (tokenizers' decode_chain).
  struct DecodeStep {
    enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
    std::string pattern, content;  // Replace: pattern -> content; Strip / Metaspace: the character
    int64_t start = 0, stop = 0;   // Strip: how many at most from either end
    Prepend prepend = Prepend::kAlways;
  };
  std::vector<DecodeStep> decode_steps_;
  int64_t vocab_size_ = 0;

  // Words seen before (the `tokenizers` BPE keeps the same cache, 10,000 entries), in shards by the word's hash
  // so that texts encoded on several threads (token_cache.cpp) rarely wait on one another's lock.
  static constexpr size_t kCacheShards = 32, kCacheCapacity = 10000 / kCacheShards;
  static constexpr size_t kShortWord = 64;     // symbols: longer words merge through a heap (merge_long_word)
  static constexpr size_t kCachedWord = 256;   // bytes: longer words (whole texts, sentencepiece-style) not cached
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int64_t>> words;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;

  void read_model(const json& model);
  void read_added_tokens(const json& list);
  void read_decoder(const json& decoder);
  void add_decode_step(const json& step);
  void check_kind(const TokenizerConfig& config);
  std::string decode_chain(const std::vector<int64_t>& ids, bool skip_special_tokens) const;
  std::vector<int64_t> merge_long_word(std::vector<int64_t> symbols) const;
  void read_post_processor(const json& processor, const TokenizerConfig& config);
  void read_template(const json& processor);
  void encode_word(const std::string& word, std::vector<int64_t>& ids) const;
  std::vector<int64_t> merge_word(const std::string& word) const;
};

void BpeTokenizer::read_model(const json& model) {
  if (!model.is_object()) throw Error(file_ + ": no \"model\" object");
  std::string type = model.value("type", "BPE");
  if (type != "BPE")
    throw Error(file_ + ": model type \"" + type + "\" is not supported; only BPE tokenizer.json files (byte-level "
                "as GPT-2, Llama-3, Qwen2, or with byte fallback as Llama-2) or a sentencepiece tokenizer.model can "
                "be loaded");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      throw Error(file_ + ": BPE model \"" + key + "\" is not supported");
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && dropout->is_number() && dropout->get<double>() > 0.0)
    throw Error(file_ + ": BPE dropout is not supported; set \"dropout\": null");
  fuse_unk_ = model.value("fuse_unk", false);
  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);
  const json& vocab = model.value("vocab", json::object());
  if (!vocab.is_object() || vocab.empty()) throw Error(file_ + ": model.vocab is missing or empty");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw Error(file_ + ": model.vocab[\"" + token + "\"] is not a token id");
    int64_t value = id.get<int64_t>();
    vocab_[token] = value;
    if (value >= static_cast<int64_t>(id_to_token_.size())) id_to_token_.resize(value + 1);
    id_to_token_[value] = token;
  }
  auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) {
    auto it = vocab_.find(unk->get<std::string>());
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  int64_t rank = 0;
  for (const auto& merge : model.value("merges", json::array())) {
    // "a b" (tokenizers < 0.20) or ["a", "b"] (later).
    std::string left, right;
    if (merge.is_string()) {
      std::string text = merge.get<std::string>();
      size_t space = text.find(' ');
      if (space == std::string::npos) throw Error(file_ + ": merge \"" + text + "\" is not \"left right\"");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      throw Error(file_ + ": merge " + merge.dump() + " is neither \"left right\" nor [left, right]");
    }
    auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end())
      throw Error(file_ + ": merge \"" + left + " " + right + "\" uses a token that is not in model.vocab");
    merges_.emplace(pair_key(l->second, r->second), Merge{rank++, m->second});
  }
}

void BpeTokenizer::read_added_tokens(const json& list) {
  for (const auto& item : list) {
    AddedToken token;
    token.content = item.value("content", "");
    token.id = item.value("id", int64_t{-1});
    if (token.content.empty() || token.id < 0) throw Error(file_ + ": added_tokens entry " + item.dump() + " lacks content or id");
    token.special = item.value("special", false);
    token.lstrip = item.value("lstrip", false);
    token.rstrip = item.value("rstrip", false);
    token.single_word = item.value("single_word", false);
    token.normalized = item.value("normalized", !token.special);
    added_.add(token);
  }
  vocab_size_ = static_cast<int64_t>(vocab_.size());
  for (const auto& token : added_.tokens())
    if (!vocab_.count(token.content)) ++vocab_size_;
}

void BpeTokenizer::read_decoder(const json& decoder) {
  std::string type = decoder.is_object() ? decoder.value("type", "") : "null";
  byte_level_decoder_ = type == "ByteLevel";
  if (byte_level_decoder_) return;  // decode()'s own byte-level path
  if (type == "Sequence") {
    for (const auto& step : decoder.value("decoders", json::array())) add_decode_step(step);
  } else if (decoder.is_object()) {
    add_decode_step(decoder);
  }
}

void BpeTokenizer::add_decode_step(const json& step) {
  const std::string type = step.is_object() ? step.value("type", "") : "";
  DecodeStep out{};
  if (type == "Replace") {
    out.kind = DecodeStep::Kind::kReplace;
    out.pattern = string_pattern(step, file_, "decoder");
    out.content = step.value("content", "");
  } else if (type == "ByteFallback") {
    out.kind = DecodeStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    out.kind = DecodeStep::Kind::kFuse;
  } else if (type == "Strip") {
    out.kind = DecodeStep::Kind::kStrip;
    out.content = step.value("content", " ");
    out.start = step.value("start", int64_t{0});
    out.stop = step.value("stop", int64_t{0});
  } else if (type == "Metaspace") {
    out.kind = DecodeStep::Kind::kMetaspace;
    out.content = step.value("replacement", std::string(kMetaspace));
    const std::string scheme = step.value("prepend_scheme", step.value("add_prefix_space", true) ? "always" : "never");
    out.prepend = scheme == "never" ? Prepend::kNever : scheme == "first" ? Prepend::kFirst : Prepend::kAlways;
  } else {
    throw Error(file_ + ": decoder \"" + type + "\" is not supported (supported: ByteLevel, or Replace, ByteFallback, "
                "Fuse, Strip and Metaspace in a Sequence)");
  }
  decode_steps_.push_back(out);
}

// Byte-level BPE (a ByteLevel pre-tokenizer) or sentencepiece-style BPE (byte fallback, spaces as "▁"), each with
// its decoder; transformers' LlamaTokenizer replaces the latter's pipeline with its own.
void BpeTokenizer::check_kind(const TokenizerConfig& config) {
  if (pre_tokenizer_.byte_level()) {
    if (!byte_level_decoder_)
      throw Error(file_ + ": a byte-level pre_tokenizer with a decoder other than ByteLevel is not supported");
    return;
  }
  if (!byte_fallback_)
    throw Error(file_ + ": neither byte-level BPE (a ByteLevel pre_tokenizer: GPT-2, Llama-3, Qwen2) nor BPE with "
                "byte_fallback (Llama-2, Mistral); this tokenizer.json is not supported");
  if (config.tokenizer_class == "LlamaTokenizer" || config.tokenizer_class == "LlamaTokenizerFast") {
    // transformers 5's LlamaTokenizer keeps the file's vocabulary and merges but sets its own pipeline: no
    // normalizer, Metaspace(prepend_scheme from add_prefix_space and legacy, split=false), and Replace("▁", " ") ->
    // ByteFallback -> Fuse -> Strip(one leading space, with add_prefix_space).
    const bool add_prefix_space = config.add_prefix_space.value_or(true);
    normalizer_.clear();
    pre_tokenizer_.use_metaspace(!add_prefix_space ? Prepend::kNever
                                 : config.legacy.value_or(false) ? Prepend::kAlways : Prepend::kFirst);
    decode_steps_.clear();
    decode_steps_.push_back({DecodeStep::Kind::kReplace, kMetaspace, " "});
    decode_steps_.push_back({DecodeStep::Kind::kByteFallback, "", ""});
    decode_steps_.push_back({DecodeStep::Kind::kFuse, "", ""});
    if (add_prefix_space) decode_steps_.push_back({DecodeStep::Kind::kStrip, "", " ", 1, 0});
  }
}

std::string BpeTokenizer::decode_chain(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    if (const AddedToken* added = added_.find(id)) {
      if (skip_special_tokens && added->special) continue;
      tokens.push_back(added->content);
    } else if (id >= 0 && id < static_cast<int64_t>(id_to_token_.size()) && !id_to_token_[id].empty()) {
      tokens.push_back(id_to_token_[id]);
    } else {
      throw Error("tokenizer: id " + std::to_string(id) + " is not in the vocabulary of " + file_);
    }
  }
  for (const DecodeStep& step : decode_steps_) {
    std::vector<std::string> next;
    switch (step.kind) {
      case DecodeStep::Kind::kReplace:
        for (std::string& token : tokens) next.push_back(replace_all(token, step.pattern, step.content));
        break;
      case DecodeStep::Kind::kByteFallback:  // a run of <0xXX> tokens: its UTF-8, or one U+FFFD a token
        next = byte_fallback(std::move(tokens));
        break;
      case DecodeStep::Kind::kFuse: {
        std::string all;
        for (const std::string& token : tokens) all += token;
        next.push_back(std::move(all));
        break;
      }
      case DecodeStep::Kind::kStrip:  // up to `start` leading and `stop` trailing copies of the character
        for (std::string& token : tokens) {
          size_t begin = 0, end = token.size();
          for (int64_t k = 0; k < step.start && token.compare(begin, step.content.size(), step.content) == 0 &&
                              begin < end; ++k)
            begin += step.content.size();
          for (int64_t k = 0; k < step.stop && end >= begin + step.content.size() &&
                              token.compare(end - step.content.size(), step.content.size(), step.content) == 0; ++k)
            end -= step.content.size();
          next.push_back(token.substr(begin, end - begin));
        }
        break;
      case DecodeStep::Kind::kMetaspace:  // replacement -> " "; in the first token (as tokenizers has it) every one
        for (size_t i = 0; i < tokens.size(); ++i)  // is dropped, unless prepend_scheme is never
          next.push_back(replace_all(tokens[i], step.content, i == 0 && step.prepend != Prepend::kNever ? "" : " "));
        break;
    }
    tokens = std::move(next);
  }
  std::string text;  // without a decoder, tokenizers joins the tokens with spaces
  for (size_t i = 0; i < tokens.size(); ++i) text += (i > 0 && decode_steps_.empty() ? " " : "") + tokens[i];
  return clean_up_spaces_ ? clean_up_tokenization(text) : text;
}

void BpeTokenizer::read_post_processor(const json& processor, const TokenizerConfig& config) {
  // transformers rebuilds the template from tokenizer_config.json's add_bos_token / add_eos_token when
  // either is set (TokenizersBackend.update_post_processor); otherwise tokenizer.json's template holds.
  if (config.add_bos_token || config.add_eos_token) {
    auto id_of = [&](const std::optional<std::string>& token, const char* name) {
      if (!token) throw Error(config.path + ": add_" + std::string(name) + "_token is true but there is no " + name + "_token");
      auto id = find_token(*token);
      if (!id) throw Error(config.path + ": " + name + "_token \"" + *token + "\" is not in " + file_);
      return *id;
    };
    if (config.add_bos_token.value_or(false)) prefix_ids_.push_back(id_of(config.bos_token, "bos"));
    if (config.add_eos_token.value_or(false)) suffix_ids_.push_back(id_of(config.eos_token, "eos"));
    return;
  }
  read_template(processor);
}

void BpeTokenizer::read_template(const json& processor) {
  if (processor.is_null()) return;
  std::string type = processor.value("type", "");
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    for (const auto& item : processor.value("processors", json::array())) read_template(item);
    return;
  }
  if (type != "TemplateProcessing")
    throw Error(file_ + ": post_processor \"" + type + "\" is not supported (supported: TemplateProcessing, "
                "ByteLevel, Sequence)");
  const json& specials = processor.value("special_tokens", json::object());
  bool after_text = false;
  for (const auto& piece : processor.value("single", json::array())) {
    if (piece.contains("Sequence")) {
      after_text = true;
      continue;
    }
    std::string name = piece.value("SpecialToken", json::object()).value("id", "");
    auto special = specials.find(name);
    if (special == specials.end())
      throw Error(file_ + ": post_processor template names \"" + name + "\", which is not in its special_tokens");
    for (const auto& id : special->value("ids", json::array()))
      (after_text ? suffix_ids_ : prefix_ids_).push_back(id.get<int64_t>());
  }
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int64_t>& ids) const {
  if (ignore_merges_) {
    // Llama-3: a pre-token that is itself a vocabulary entry is emitted whole, whatever the merges say.
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  CacheShard& shard = cache_[std::hash<std::string>{}(word) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.words.find(word);
    if (it != shard.words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> word_ids = merge_word(word);
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  if (word.size() > kCachedWord) return;
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.words.size() < kCacheCapacity) shard.words.emplace(word, std::move(word_ids));
}

std::vector<int64_t> BpeTokenizer::merge_word(const std::string& word) const {
  // One symbol per character (a byte of the original text), then repeatedly merge the adjacent pair of
  // lowest rank, leftmost first: the order of the `tokenizers` priority queue.
  std::vector<int64_t> symbols;
  const auto* s = reinterpret_cast<const uint8_t*>(word.data());
  int32_t i = 0, length = static_cast<int32_t>(word.size());
  bool previous_unknown = false;
  while (i < length) {
    int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, length, c);
    std::string character = word.substr(start, i - start);
    auto it = vocab_.find(character);
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
      previous_unknown = false;
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      std::vector<int64_t> byte_ids;
      for (unsigned char byte : character) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", byte);
        auto byte_it = vocab_.find(name);
        if (byte_it == vocab_.end()) all_bytes = false;
        else byte_ids.push_back(byte_it->second);
      }
      if (all_bytes) {
        symbols.insert(symbols.end(), byte_ids.begin(), byte_ids.end());
        previous_unknown = false;
        continue;
      }
    }
    if (unk_id_ && !(fuse_unk_ && previous_unknown)) symbols.push_back(*unk_id_);
    previous_unknown = true;
  }
  if (symbols.size() > kShortWord) return merge_long_word(std::move(symbols));
  while (symbols.size() > 1) {
    const Merge* best = nullptr;
    size_t best_at = 0;
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
      auto it = merges_.find(pair_key(symbols[k], symbols[k + 1]));
      if (it != merges_.end() && (!best || it->second.rank < best->rank)) {
        best = &it->second;
        best_at = k;
      }
    }
    if (!best) break;
    symbols[best_at] = best->merged_id;
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  return symbols;
}

// The same merges for a long word (a whole sentencepiece-style text is one) in O(n log n): the pairs in a heap by
// (rank, position), symbols in a linked list, a popped pair skipped when either side has changed since it was
// pushed. The lowest rank goes first and, among equal ranks, the leftmost: merge_word's order.
std::vector<int64_t> BpeTokenizer::merge_long_word(std::vector<int64_t> symbols) const {
  const int64_t n = static_cast<int64_t>(symbols.size());
  std::vector<int64_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int64_t k = 0; k < n; ++k) {
    prev[k] = k - 1;
    next[k] = k + 1 < n ? k + 1 : -1;
  }
  struct Candidate {
    int64_t rank, left, left_id, right_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int64_t left) {
    if (left < 0 || next[left] < 0) return;
    auto it = merges_.find(pair_key(symbols[left], symbols[next[left]]));
    if (it != merges_.end()) queue.push({it->second.rank, left, symbols[left], symbols[next[left]]});
  };
  for (int64_t k = 0; k + 1 < n; ++k) push(k);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const int64_t right = next[top.left];
    if (!alive[top.left] || right < 0 || symbols[top.left] != top.left_id || symbols[right] != top.right_id)
      continue;  // stale: a side was merged into something else since
    symbols[top.left] = merges_.at(pair_key(top.left_id, top.right_id)).merged_id;
    alive[right] = false;
    next[top.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.left;
    push(prev[top.left]);
    push(top.left);
  }
  std::vector<int64_t> out;
  for (int64_t k = 0; k >= 0; k = next[k]) out.push_back(symbols[k]);
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json, const TokenizerConfig& config) {
  json document = read_json_file(tokenizer_json);
  if (!document.is_object()) throw Error(tokenizer_json + ": expected a JSON object");
  try {
    return std::make_unique<BpeTokenizer>(document, tokenizer_json, config);
  } catch (const json::exception& e) {  // a field of the wrong type somewhere the reader did not check
    throw Error(tokenizer_json + ": unexpected structure (" + e.what() + "); copy it again from the base model");
  }
}

}  // namespace autotrain::tokenization
