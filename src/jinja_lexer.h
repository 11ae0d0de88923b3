// The first pass over a Jinja template (src/jinja_lexer.cpp): the source cut into text and tags, with `-`
// whitespace control, trim_blocks and lstrip_blocks applied as jinja2's lexer applies them with the options
// transformers sets, and each tag's tokens. Used by src/jinja_parser.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace autotrain::jinja {

struct Token {
  enum class Kind { kName, kString, kInteger, kFloat, kOperator, kEnd };
  Kind kind;
  std::string text;  // name, operator, or the unescaped string
  int64_t integer = 0;
  double number = 0;
};

struct Piece {
  enum class Kind { kText, kOutput, kStatement };  // text, {{ ... }}, {% ... %} (comments are dropped)
  Kind kind;
  int line;                   // of a tag, for messages
  std::string text;           // kText, whitespace control applied
  std::vector<Token> tokens;  // a tag's, without its delimiters
};

// Throws Error "<name>: line N: <what>".
[[noreturn]] void fail(const std::string& name, int line, const std::string& what);

// The pieces of `source` in order; Error for a tag or string that is never closed, or a character no token
// starts with.
std::vector<Piece> scan(const std::string& source, const std::string& name);

// A string literal's body with Python's escapes decoded (\n, \t, \\, \', \xhh, \uhhhh, ...; jinja2 decodes its
// string literals the same way), an unknown escape kept as written.
std::string unescape(const std::string& body);

}  // namespace autotrain::jinja
