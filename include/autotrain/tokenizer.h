// Text to token ids and back, with the ids Hugging Face gives for the same model folder:
// tokenizer.model (sentencepiece, with transformers' LlamaTokenizer rules) or tokenizer.json (byte-level BPE,
// with the `tokenizers` library's rules). Text must be valid UTF-8; anything else is an Error (the Rust
// library only ever sees `str`, so there is no behaviour of theirs to copy).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace autotrain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // model_dir holds tokenizer.model (+ tokenizer_config.json, special_tokens_map.json) or tokenizer.json.
  // tokenizer.model wins when both are there; neither is an Error naming the folder.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);

  // add_special_tokens: what HF's add_special_tokens=True adds (bos / eos as tokenizer_config.json's
  // add_bos_token / add_eos_token say, else tokenizer.json's post_processor template).
  virtual std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const = 0;
  // skip_special_tokens drops the special added tokens (bos, eos, <|im_end|>, ...). An id outside the
  // vocabulary is an Error (HF silently drops it; here it is a bug worth hearing about).
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const = 0;
  virtual int64_t vocab_size() const = 0;  // including added tokens (HF's len(tokenizer))

  std::optional<int64_t> bos_id() const { return bos_id_; }
  std::optional<int64_t> eos_id() const { return eos_id_; }
  std::optional<int64_t> pad_id() const { return pad_id_; }
  // The pad token, else the eos: what AutoTrain sets as pad and TRL pads with (and a reward model pools past).
  std::optional<int64_t> pad_or_eos_id() const { return pad_id_ ? pad_id_ : eos_id_; }
  // The id of one whole token (a vocabulary entry or an added token), if there is one.
  std::optional<int64_t> token_to_id(const std::string& token) const { return find_token(token); }

 protected:
  virtual std::optional<int64_t> find_token(const std::string& token) const = 0;

  std::optional<int64_t> bos_id_, eos_id_, pad_id_;
};

}  // namespace autotrain
