// The tokenized training texts, cached on disk: every text's token ids concatenated into one file of
// int32 ids that is memory-mapped when read, so a 10 GB dataset never has to fit in RAM and a second run
// skips tokenization. The file's name is a fingerprint of the data file's bytes, the tokenizer's files and
// the settings that change the ids, so any change to one of them tokenizes again.
//
// File layout (little-endian): "ATTOKEN1", count × int32 ids, uint64 count, "ATTOKEND". The count sits
// in a trailer so the ids can be streamed out; the file is written under a temporary name and renamed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autotrain/data.h"

namespace autotrain {

class ChatTemplate;

// A hex digest (64-bit FNV-1a) of the bytes of `files`, in order, and of `extra` (settings).
std::string fingerprint(const std::vector<std::string>& files, const std::string& extra);

class TokenizedText {
 public:
  // Maps a cache file; throws Error naming it when it is truncated or not a token cache.
  static TokenizedText open(const std::string& path);

  int64_t size() const { return size_; }  // tokens
  const int32_t* ids() const { return ids_; }
  // Number of whole blocks of block_size tokens (the remainder is dropped, as AutoTrain does).
  int64_t num_blocks(int64_t block_size) const { return size_ / block_size; }
  // Block `index` as int64 ids (block_size,), a copy.
  at::Tensor block(int64_t index, int64_t block_size) const;
  // The first `tokens` tokens (all of them when there are fewer), sharing the mapping.
  TokenizedText first(int64_t tokens) const {
    TokenizedText out = *this;
    out.size_ = std::min(size_, std::max<int64_t>(tokens, 0));
    return out;
  }

 private:
  std::shared_ptr<void> mapping_;
  const int32_t* ids_ = nullptr;
  int64_t size_ = 0;
};

using TextEncoder = std::function<std::vector<int64_t>(const std::string& text)>;

struct TokenCacheRequest {
  DataFiles data_files;     // one split's files (data.h resolve_split_files)
  std::string text_column;
  std::string cache_dir;    // where cache files live
  std::string fingerprint;  // of the data, tokenizer and settings (see fingerprint())
  const ChatTemplate* chat_template = nullptr;  // set: text_column holds conversations, rendered by it
  bool nulls_as_empty = false;  // a null text is an empty one (AutoTrain's default trainer), else an error
};

// Returns the path of the cache file for `request`, tokenizing the data file with `encode` (texts in file
// order, with progress) when no complete cache file exists yet. Throws Error for an empty dataset. Texts are
// encoded in batches on as many threads as libtorch uses (at::get_num_threads()), so `encode` is called from
// several threads at once and must be thread-safe; the file is the same whatever the thread count.
std::string ensure_token_cache(const TokenCacheRequest& request, const TextEncoder& encode);

}  // namespace autotrain
