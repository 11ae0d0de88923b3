// Small string helpers shared by parsers and error messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/util/ArrayRef.h>

namespace autotrain {

std::string trim(const std::string& text);
// `text` with A-Z as a-z (file extensions, GPU names); other bytes, UTF-8 included, unchanged.
std::string ascii_lower(std::string text);
std::vector<std::string> split(const std::string& text, char separator);
std::string join(const std::vector<std::string>& parts, const std::string& separator);
// Whether `text` ends with `suffix` (C++20's std::string::ends_with).
bool ends_with(const std::string& text, const std::string& suffix);
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word` by edit distance (ties: the first); empty when there are none.
std::string nearest_word(const std::string& word, const std::vector<std::string>& candidates);
// "[64, 128]": a tensor shape for error messages.
std::string shape_text(c10::ArrayRef<int64_t> shape);

}  // namespace autotrain
