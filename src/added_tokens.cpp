// HF's AddedVocabulary (tokenizers/src/tokenizer/added_vocabulary.rs, find_matches): the rules by which
// special and added tokens are cut out of a text before normalisation and pre-tokenisation.
#include <algorithm>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include "tokenizer_parts.h"

namespace autotrain::tokenization {
namespace {

// Rust regex's \w (Unicode): Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(UChar32 c) {
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return true;
  switch (u_charType(c)) {
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

UChar32 code_point_before(std::string_view text, size_t end) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  int32_t i = static_cast<int32_t>(end);
  UChar32 c;
  U8_PREV(s, 0, i, c);
  return c;
}

UChar32 code_point_at(std::string_view text, size_t start) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  int32_t i = static_cast<int32_t>(start);
  UChar32 c;
  U8_NEXT(s, i, static_cast<int32_t>(text.size()), c);
  return c;
}

// Start of the run of whitespace (Rust's \s: Unicode White_Space) that ends at `end`.
size_t whitespace_run_start(std::string_view text, size_t end) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  int32_t i = static_cast<int32_t>(end);
  while (i > 0) {
    int32_t before = i;
    UChar32 c;
    U8_PREV(s, 0, i, c);
    if (!u_isUWhiteSpace(c)) return static_cast<size_t>(before);
  }
  return 0;
}

// End of the run of whitespace that starts at `start`.
size_t whitespace_run_end(std::string_view text, size_t start) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  int32_t i = static_cast<int32_t>(start), length = static_cast<int32_t>(text.size());
  while (i < length) {
    int32_t before = i;
    UChar32 c;
    U8_NEXT(s, i, length, c);
    if (!u_isUWhiteSpace(c)) return static_cast<size_t>(before);
  }
  return text.size();
}

}  // namespace

void AddedVocabulary::add(const AddedToken& token) {
  if (token.content.empty()) return;  // HF ignores empty added tokens
  auto it = by_content_.find(token.content);
  if (it != by_content_.end()) {
    size_t index = it->second;
    by_id_.erase(tokens_[index].id);
    for (auto& bucket : candidates_[tokens_[index].normalized])
      bucket.erase(std::remove(bucket.begin(), bucket.end(), index), bucket.end());
    tokens_[index] = token;
    by_id_[token.id] = index;
    index_candidate(index);
    return;
  }
  by_content_[token.content] = tokens_.size();
  by_id_[token.id] = tokens_.size();
  tokens_.push_back(token);
  index_candidate(tokens_.size() - 1);
}

// Candidates by first byte, longest first, so that the first hit at a position is the leftmost-longest
// match (aho-corasick's MatchKind::LeftmostLongest in `tokenizers`).
void AddedVocabulary::index_candidate(size_t index) {
  const AddedToken& token = tokens_[index];
  auto& bucket = candidates_[token.normalized][static_cast<uint8_t>(token.content[0])];
  auto position = std::find_if(bucket.begin(), bucket.end(), [&](size_t other) {
    return tokens_[other].content.size() < token.content.size();
  });
  bucket.insert(position, index);
}

const AddedToken* AddedVocabulary::find(int64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int64_t> AddedVocabulary::id_of(const std::string& content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

bool AddedVocabulary::has_normalized_tokens() const {
  for (const auto& token : tokens_)
    if (token.normalized) return true;
  return false;
}

std::vector<AddedVocabulary::Piece> AddedVocabulary::split(std::string_view text, bool normalized) const {
  const auto& candidates = candidates_[normalized];
  std::vector<Piece> pieces;
  size_t start_offset = 0, search = 0;
  while (search < text.size()) {
    const AddedToken* match = nullptr;
    size_t start = search;
    for (; start < text.size() && !match; ++start) {
      for (size_t index : candidates[static_cast<uint8_t>(text[start])]) {
        if (text.compare(start, tokens_[index].content.size(), tokens_[index].content) == 0) {
          match = &tokens_[index];
          break;
        }
      }
      if (match) break;
    }
    if (!match) break;
    size_t stop = start + match->content.size();
    search = stop;
    if (match->single_word) {
      bool word_before = start > 0 && is_word_char(code_point_before(text, start));
      bool word_after = stop < text.size() && is_word_char(code_point_at(text, stop));
      if (word_before || word_after) continue;
    }
    if (match->lstrip) start = std::max(whitespace_run_start(text, start), start_offset);
    if (match->rstrip) stop = whitespace_run_end(text, stop);
    search = std::max(search, stop);
    if (start_offset < start) pieces.push_back({text.substr(start_offset, start - start_offset), start_offset, {}});
    pieces.push_back({text.substr(start, stop - start), start, match->id});
    start_offset = stop;
  }
  if (start_offset < text.size() || text.empty())
    pieces.push_back({text.substr(start_offset), start_offset, {}});
  return pieces;
}

}  // namespace autotrain::tokenization
