// A sentencepiece tokenizer.model with the rules of transformers 5's LlamaTokenizer, which is what
// AutoTokenizer gives for Llama-2 / Mistral folders: added and special tokens are cut out of the text
// first, a "▁" is prepended only where HF's Metaspace(prepend_scheme) puts one, and decoding runs HF's
// Replace("▁"," ") -> ByteFallback -> Fuse -> Strip(1 leading space) chain. The pieces in between are
// libsentencepiece's own segmentation.
#include <sentencepiece_processor.h>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "tokenizer_parts.h"

namespace autotrain::tokenization {
namespace {

// Appended to the serialized ModelProto: a second normalizer_spec (field 3), which protobuf merges into
// the first, setting precompiled_charsmap (2) = "", add_dummy_prefix (3) = false and
// remove_extra_whitespaces (4) = false. HF's LlamaTokenizer has no normalizer and adds the "▁" itself,
// so sentencepiece must only escape spaces. (No protobuf headers needed: this is the wire format.)
const char kNormalizerOverride[] = {0x1A, 0x06, 0x12, 0x00, 0x18, 0x00, 0x20, 0x00};

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& file, const TokenizerConfig& config) : file_(file) {
    std::string proto = read_file(file);
    proto.append(kNormalizerOverride, sizeof(kNormalizerOverride));
    auto status = processor_.LoadFromSerializedProto(proto);
    if (!status.ok())
      throw Error(file + ": not a sentencepiece model (" + status.ToString() + "); copy tokenizer.model again "
                  "from the base model");
    read_added_tokens(config);
    // transformers: add_prefix_space defaults to true; legacy=false prepends "▁" only at the very start
    // of the text ("first"), legacy=true to every piece between added tokens ("always").
    bool add_prefix_space = config.add_prefix_space.value_or(true);
    prepend_ = !add_prefix_space ? Prepend::kNever : config.legacy.value_or(false) ? Prepend::kAlways : Prepend::kFirst;
    strip_leading_space_ = add_prefix_space;
    clean_up_spaces_ = config.clean_up_tokenization_spaces.value_or(false);
    if (config.bos_token) bos_id_ = find_token(*config.bos_token);
    if (config.eos_token) eos_id_ = find_token(*config.eos_token);
    if (config.pad_token) pad_id_ = find_token(*config.pad_token);
    // TokenizersBackend.update_post_processor: both default to false when tokenizer_config.json is silent.
    add_bos_ = config.add_bos_token.value_or(false) && bos_id_;
    add_eos_ = config.add_eos_token.value_or(false) && eos_id_;
  }

  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const override {
    require_utf8(text);
    std::vector<int64_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
    for (const auto& piece : added_.split(text, false)) {
      if (piece.id) {
        ids.push_back(*piece.id);
        continue;
      }
      // No normalizer: tokens flagged "normalized" are matched on the same text.
      for (const auto& part : added_.split(piece.text, true)) {
        if (part.id) ids.push_back(*part.id);
        else encode_piece(part.text, piece.offset + part.offset, ids);
      }
    }
    if (add_special_tokens && add_eos_) ids.push_back(*eos_id_);
    return ids;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    for (int64_t id : ids) {
      if (const AddedToken* added = added_.find(id)) {
        if (skip_special_tokens && added->special) continue;
        tokens.push_back(replace_all(added->content, "\xE2\x96\x81", " "));
      } else if (id >= 0 && id < processor_.GetPieceSize()) {
        tokens.push_back(replace_all(processor_.IdToPiece(static_cast<int>(id)), "\xE2\x96\x81", " "));
      } else {
        throw Error("tokenizer: id " + std::to_string(id) + " is not in the vocabulary of " + file_);
      }
    }
    std::string text;
    for (const std::string& token : byte_fallback(std::move(tokens))) text += token;
    if (strip_leading_space_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
    return clean_up_spaces_ ? clean_up_tokenization(text) : text;
  }

  int64_t vocab_size() const override { return vocab_size_; }

 protected:
  std::optional<int64_t> find_token(const std::string& token) const override {
    if (auto id = added_.id_of(token)) return id;
    int id = processor_.PieceToId(token);
    if (id >= 0 && id < processor_.GetPieceSize() && processor_.IdToPiece(id) == token) return id;
    return std::nullopt;
  }

 private:
  enum class Prepend { kNever, kFirst, kAlways };

  std::string file_;
  sentencepiece::SentencePieceProcessor processor_;
  AddedVocabulary added_;
  Prepend prepend_ = Prepend::kFirst;
  bool strip_leading_space_ = true, clean_up_spaces_ = false, add_bos_ = false, add_eos_ = false;
  int64_t vocab_size_ = 0;

  // HF Metaspace: "▁" in front unless the piece already starts with one after spaces became "▁" (so a
  // leading space or a literal "▁" suppresses it); then sentencepiece.
  void encode_piece(std::string_view text, size_t offset, std::vector<int64_t>& ids) const {
    if (text.empty()) return;
    std::string input(text);
    bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && offset == 0);
    if (prepend && input[0] != ' ' && input.compare(0, 3, "\xE2\x96\x81") != 0) input.insert(input.begin(), ' ');
    std::vector<int> pieces;
    auto status = processor_.Encode(input, &pieces);
    if (!status.ok()) throw Error("tokenizer: sentencepiece failed on a text: " + status.ToString());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  // tokenizer_config.json's added_tokens_decoder, then the named special tokens it does not list
  // (transformers adds those as special tokens too: "<s>" in a text becomes the bos id).
  void read_added_tokens(const TokenizerConfig& config) {
    int64_t next_id = processor_.GetPieceSize();
    for (const auto& token : config.added_tokens_decoder) {
      added_.add(token);
      next_id = std::max(next_id, token.id + 1);
    }
    std::vector<std::string> named = config.additional_special_tokens;
    for (const auto* token : {&config.bos_token, &config.eos_token, &config.unk_token, &config.pad_token})
      if (*token) named.push_back(**token);
    for (const std::string& content : named) {
      if (content.empty() || added_.id_of(content)) continue;
      AddedToken token;
      token.content = content;
      int id = processor_.PieceToId(content);
      bool in_vocab = id >= 0 && id < processor_.GetPieceSize() && processor_.IdToPiece(id) == content;
      token.id = in_vocab ? id : next_id++;
      added_.add(token);
    }
    vocab_size_ = processor_.GetPieceSize();
    for (const auto& token : added_.tokens())
      if (token.id >= processor_.GetPieceSize()) ++vocab_size_;
  }
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& tokenizer_model,
                                                        const TokenizerConfig& config) {
  return std::make_unique<SentencePieceTokenizer>(tokenizer_model, config);
}

}  // namespace autotrain::tokenization
