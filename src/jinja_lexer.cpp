// Jinja source to text and tags (src/jinja_lexer.h).
#include "jinja_lexer.h"

#include <cctype>
#include <cstdlib>

#include "autotrain/error.h"
#include "tokenizer_parts.h"

namespace autotrain::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Scanner {
 public:
  Scanner(const std::string& source, const std::string& name) : source_(source), name_(name) {}

  std::vector<Piece> scan() {
    // keep_trailing_newline is off: jinja2 drops one newline at the end of the template
    if (!source_.empty() && source_.back() == '\n') source_.pop_back();
    if (!source_.empty() && source_.back() == '\r') source_.pop_back();
    size_t pos = 0;
    bool strip_next = false;  // the previous tag ended with `-`
    while (pos < source_.size()) {
      const size_t open = find_open(pos);
      std::string text = source_.substr(pos, open - pos);
      if (strip_next) text.erase(0, text.find_first_not_of(" \t\n\r\v\f") == std::string::npos
                                         ? text.size() : text.find_first_not_of(" \t\n\r\v\f"));
      if (open == source_.size()) {
        add_text(text);
        break;
      }
      const char kind = source_[open + 1];  // '{', '%' or '#'
      const char modifier = open + 2 < source_.size() ? source_[open + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (kind != '{' && modifier != '+') {
        strip_line_start(text, pos);
      }
      add_text(text);
      const int line = line_at(open);
      size_t inner = open + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      if (kind == '#') {
        const size_t close = source_.find("#}", inner);
        if (close == std::string::npos) fail(name_, line, "a comment {# is never closed");
        strip_next = close > inner && source_[close - 1] == '-';
        keep_newline_ = close > inner && source_[close - 1] == '+';
        pos = close + 2;
      } else {
        Piece piece{kind == '{' ? Piece::Kind::kOutput : Piece::Kind::kStatement, line, "", {}};
        pos = lex_tag(inner, kind == '{' ? '}' : '%', piece.tokens, strip_next, line);
        pieces_.push_back(std::move(piece));
      }
      if (kind != '{' && !strip_next && !keep_newline_ && pos < source_.size()) {  // trim_blocks: one newline
        if (source_[pos] == '\n') ++pos;
        else if (source_.compare(pos, 2, "\r\n") == 0) pos += 2;
      }
    }
    return std::move(pieces_);
  }

 private:
  size_t find_open(size_t pos) const {
    while (true) {
      pos = source_.find('{', pos);
      if (pos == std::string::npos || pos + 1 >= source_.size()) return source_.size();
      const char next = source_[pos + 1];
      if (next == '{' || next == '%' || next == '#') return pos;
      ++pos;
    }
  }

  // lstrip_blocks: spaces and tabs between the start of a line and a block tag go.
  void strip_line_start(std::string& text, size_t text_start) const {
    const size_t newline = text.rfind('\n');
    const size_t from = newline == std::string::npos ? 0 : newline + 1;
    if (newline == std::string::npos && !(text_start == 0 || source_[text_start - 1] == '\n')) return;
    if (text.find_first_not_of(" \t", from) == std::string::npos) text.erase(from);
  }

  void add_text(const std::string& text) {
    if (!text.empty()) pieces_.push_back(Piece{Piece::Kind::kText, 0, text, {}});
  }

  int line_at(size_t pos) const {
    int line = 1;
    for (size_t i = 0; i < pos; ++i) line += source_[i] == '\n';
    return line;
  }

  // Lexes the tokens of a tag up to its closing `}}` / `%}`; returns the position after it.
  size_t lex_tag(size_t pos, char closer, std::vector<Token>& tokens, bool& strip_next, int line) {
    static const char* kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                       ">", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "="};
    while (true) {
      while (pos < source_.size() && is_space(source_[pos])) ++pos;
      if (pos >= source_.size()) fail(name_, line, std::string("a tag is never closed with ") + closer + "}");
      keep_newline_ = false;
      if (source_.compare(pos, 3, std::string("-") + closer + "}") == 0 ||
          source_.compare(pos, 3, std::string("+") + closer + "}") == 0) {
        strip_next = source_[pos] == '-';
        keep_newline_ = source_[pos] == '+';  // `+%}` turns trim_blocks off for this tag
        return pos + 3;
      }
      if (source_[pos] == closer && pos + 1 < source_.size() && source_[pos + 1] == '}' &&
          !(closer == '}' && open_braces(tokens) > 0)) {
        strip_next = false;
        return pos + 2;
      }
      const char c = source_[pos];
      if (c == '\'' || c == '"') {
        size_t end = pos + 1;
        while (end < source_.size() && source_[end] != c) end += source_[end] == '\\' ? 2 : 1;
        if (end >= source_.size()) fail(name_, line, "a string literal is never closed");
        tokens.push_back(Token{Token::Kind::kString, unescape(source_.substr(pos + 1, end - pos - 1))});
        pos = end + 1;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t end = pos;
        while (end < source_.size() && (std::isdigit(static_cast<unsigned char>(source_[end])) || source_[end] == '_'))
          ++end;
        bool is_float = false;
        if (end + 1 < source_.size() && source_[end] == '.' && std::isdigit(static_cast<unsigned char>(source_[end + 1]))) {
          is_float = true;
          for (++end; end < source_.size() && std::isdigit(static_cast<unsigned char>(source_[end])); ++end) {}
        }
        if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
          size_t e = end + 1;
          if (e < source_.size() && (source_[e] == '+' || source_[e] == '-')) ++e;
          if (e < source_.size() && std::isdigit(static_cast<unsigned char>(source_[e]))) {
            is_float = true;
            for (end = e; end < source_.size() && std::isdigit(static_cast<unsigned char>(source_[end])); ++end) {}
          }
        }
        std::string digits;
        for (size_t i = pos; i < end; ++i)
          if (source_[i] != '_') digits += source_[i];
        Token token{is_float ? Token::Kind::kFloat : Token::Kind::kInteger, digits};
        if (is_float) token.number = std::strtod(digits.c_str(), nullptr);
        else token.integer = std::strtoll(digits.c_str(), nullptr, 10);
        tokens.push_back(token);
        pos = end;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos;
        while (end < source_.size() && (std::isalnum(static_cast<unsigned char>(source_[end])) || source_[end] == '_'))
          ++end;
        tokens.push_back(Token{Token::Kind::kName, source_.substr(pos, end - pos)});
        pos = end;
      } else {
        bool matched = false;
        for (const char* op : kOperators) {
          const size_t length = std::char_traits<char>::length(op);
          if (source_.compare(pos, length, op) == 0) {
            tokens.push_back(Token{Token::Kind::kOperator, op});
            pos += length;
            matched = true;
            break;
          }
        }
        if (!matched) fail(name_, line, std::string("unexpected character '") + c + "'");
      }
    }
  }

  // `}}` inside {{ {'a': {}} }} closes a dict, not the tag: count the braces opened so far.
  static int open_braces(const std::vector<Token>& tokens) {
    int depth = 0;
    for (const Token& t : tokens) {
      if (t.kind != Token::Kind::kOperator) continue;
      if (t.text == "{") ++depth;
      if (t.text == "}") --depth;
    }
    return depth;
  }

  std::string source_;
  const std::string& name_;
  std::vector<Piece> pieces_;
  bool keep_newline_ = false;  // the last tag closed with `+`
};

}  // namespace

[[noreturn]] void fail(const std::string& name, int line, const std::string& what) {
  throw Error(name + ": line " + std::to_string(line) + ": " + what);
}

std::vector<Piece> scan(const std::string& source, const std::string& name) { return Scanner(source, name).scan(); }

std::string unescape(const std::string& body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out += body[i];
      continue;
    }
    const char c = body[++i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '0': out += '\0'; break;
      case '\\': case '\'': case '"': out += c; break;
      case 'x': case 'u': case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (i + digits >= body.size()) {  // too few digits: kept as written
          out += '\\';
          out += c;
          break;
        }
        const auto code = static_cast<uint32_t>(std::strtoul(body.substr(i + 1, digits).c_str(), nullptr, 16));
        i += digits;
        tokenization::append_utf8(out, code);
        break;
      }
      default: out += '\\'; out += c;  // Python keeps an unknown escape as written
    }
  }
  return out;
}

}  // namespace autotrain::jinja
