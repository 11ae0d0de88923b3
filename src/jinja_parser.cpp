// Jinja source to the tree of src/jinja_ast.h, in two passes: the scanner cuts the source into text and tags
// (applying `-` whitespace control, trim_blocks and lstrip_blocks as jinja2's lexer does with the options
// transformers sets) and lexes each tag's tokens; the parser reads statements and expressions with jinja2's
// operator precedence (jinja2/parser.py).
#include <cctype>
#include <cstdlib>
#include <set>

#include "autotrain/error.h"
#include "jinja_ast.h"
#include "tokenizer_parts.h"

namespace autotrain::jinja {
namespace {

struct Token {
  enum class Kind { kName, kString, kInteger, kFloat, kOperator, kEnd };
  Kind kind;
  std::string text;  // name, operator, or the unescaped string
  int64_t integer = 0;
  double number = 0;
};

struct Piece {
  enum class Kind { kText, kOutput, kStatement };
  Kind kind;
  int line;
  std::string text;
  std::vector<Token> tokens;
};

[[noreturn]] void fail(const std::string& name, int line, const std::string& what) {
  throw Error(name + ": line " + std::to_string(line) + ": " + what);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

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

namespace {

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

class Parser {
 public:
  Parser(std::vector<Piece> pieces, const std::string& name) : pieces_(std::move(pieces)), name_(name) {}

  Body parse_template() {
    Body body = parse_body({});
    if (piece_ < pieces_.size()) fail(name_, pieces_[piece_].line, "unexpected {% " + keyword_of(pieces_[piece_]) + " %}");
    return body;
  }

 private:
  static std::string keyword_of(const Piece& piece) {
    return piece.tokens.empty() ? std::string() : piece.tokens[0].text;
  }

  // Statements up to one of `ends` (left unread), or the end of the template when `ends` is empty.
  Body parse_body(const std::set<std::string>& ends) {
    const DepthGuard guard(this);
    Body body;
    while (piece_ < pieces_.size()) {
      const Piece& piece = pieces_[piece_];
      if (piece.kind == Piece::Kind::kText) {
        auto node = std::make_shared<Node>();
        node->kind = Node::Kind::kText;
        node->text = piece.text;
        body.push_back(node);
        ++piece_;
        continue;
      }
      start_tokens(piece);
      if (piece.kind == Piece::Kind::kOutput) {
        auto node = std::make_shared<Node>();
        node->kind = Node::Kind::kOutput;
        node->line = line_;
        node->expr = parse_expression();
        expect_end();
        body.push_back(node);
        ++piece_;
        continue;
      }
      const std::string keyword = keyword_of(piece);
      if (ends.count(keyword)) return body;
      ++piece_;
      ++token_;
      if (keyword == "generation") {  // transformers' assistant-mask marker: its body renders as is
        expect_end();
        for (auto& node : parse_body({"endgeneration"})) body.push_back(node);
        close("endgeneration");
        continue;
      }
      body.push_back(parse_statement(keyword));
    }
    if (!ends.empty()) fail(name_, line_, "missing {% " + *ends.rbegin() + " %}");
    return body;
  }

  std::shared_ptr<const Node> parse_statement(const std::string& keyword) {
    auto node = std::make_shared<Node>();
    node->line = line_;
    if (keyword == "if") {
      node->kind = Node::Kind::kIf;
      ExprPtr condition = parse_expression();
      while (true) {
        expect_end();
        Body branch = parse_body({"elif", "else", "endif"});
        node->branches.emplace_back(condition, std::move(branch));
        const std::string next = keyword_of(pieces_[piece_]);
        start_tokens(pieces_[piece_++]);
        ++token_;
        if (next == "endif") break;
        if (next == "else") {
          expect_end();
          node->branches.emplace_back(nullptr, parse_body({"endif"}));
          close("endif");
          break;
        }
        condition = parse_expression();
      }
      return node;
    }
    if (keyword == "for") {
      node->kind = Node::Kind::kFor;
      do node->targets.push_back(expect_name()); while (accept(","));
      if (expect_name() != "in") fail(name_, line_, "expected 'in' in a for loop");
      node->expr = parse_expression(/*conditional=*/false);
      if (accept_name("if")) node->filter = parse_expression(/*conditional=*/false);
      if (accept_name("recursive")) fail(name_, line_, "recursive loops are not supported");
      expect_end();
      node->body = parse_body({"else", "endfor"});
      if (keyword_of(pieces_[piece_]) == "else") {
        start_tokens(pieces_[piece_++]);
        ++token_;
        expect_end();
        node->else_body = parse_body({"endfor"});
      }
      close("endfor");
      return node;
    }
    if (keyword == "set") {
      node->targets.push_back(expect_name());
      if (accept(".")) node->targets.push_back(expect_name());
      if (accept("=")) {
        node->kind = Node::Kind::kSet;
        node->expr = parse_expression();
        expect_end();
      } else {
        node->kind = Node::Kind::kSetBlock;
        expect_end();
        node->body = parse_body({"endset"});
        close("endset");
      }
      return node;
    }
    if (keyword == "macro") {
      node->kind = Node::Kind::kMacro;
      node->targets.push_back(expect_name());
      expect("(");
      while (!accept(")")) {
        std::string parameter = expect_name();
        ExprPtr fallback = accept("=") ? parse_expression() : nullptr;
        node->parameters.emplace_back(parameter, fallback);
        if (!accept(",")) {
          expect(")");
          break;
        }
      }
      expect_end();
      node->body = parse_body({"endmacro"});
      close("endmacro");
      return node;
    }
    if (keyword == "break" || keyword == "continue") {
      node->kind = keyword == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      expect_end();
      return node;
    }
    fail(name_, line_, "{% " + keyword + " %} is not supported by autotrain's chat template renderer");
  }

  void close(const std::string& keyword) {
    if (piece_ >= pieces_.size() || keyword_of(pieces_[piece_]) != keyword)
      fail(name_, line_, "missing {% " + keyword + " %}");
    start_tokens(pieces_[piece_++]);
    ++token_;
    expect_end();
  }

  // ---- tokens of the current tag
  void start_tokens(const Piece& piece) {
    tokens_ = &piece.tokens;
    token_ = 0;
    line_ = piece.line;
  }
  const Token& peek(size_t ahead = 0) const {
    static const Token kEnd{Token::Kind::kEnd, ""};
    return token_ + ahead < tokens_->size() ? (*tokens_)[token_ + ahead] : kEnd;
  }
  bool at_operator(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == Token::Kind::kOperator && peek(ahead).text == op;
  }
  bool at_name(const char* name) const { return peek().kind == Token::Kind::kName && peek().text == name; }
  bool accept(const char* op) {
    if (!at_operator(op)) return false;
    ++token_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!at_name(name)) return false;
    ++token_;
    return true;
  }
  void expect(const char* op) {
    if (!accept(op)) fail(name_, line_, std::string("expected '") + op + "', found '" + peek().text + "'");
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::kName) fail(name_, line_, "expected a name, found '" + peek().text + "'");
    return (*tokens_)[token_++].text;
  }
  void expect_end() {
    if (peek().kind != Token::Kind::kEnd) fail(name_, line_, "unexpected '" + peek().text + "'");
  }

  ExprPtr make(Expr::Kind kind, ExprPtr a = nullptr, ExprPtr b = nullptr, const std::string& name = "") {
    auto expr = std::make_shared<Expr>();
    expr->kind = kind;
    expr->line = line_;
    expr->a = std::move(a);
    expr->b = std::move(b);
    expr->name = name;
    return expr;
  }

  // ---- expressions, loosest binding first (jinja2/parser.py)
  ExprPtr parse_expression(bool conditional = true) {
    const DepthGuard guard(this);
    ExprPtr expr = parse_or();
    while (conditional && accept_name("if")) {
      auto node = std::make_shared<Expr>(*make(Expr::Kind::kConditional, expr, parse_or()));
      if (accept_name("else")) node->c = parse_expression();
      expr = node;
    }
    return expr;
  }
  ExprPtr parse_or() {
    ExprPtr expr = parse_and();
    while (accept_name("or")) expr = make(Expr::Kind::kBinary, expr, parse_and(), "or");
    return expr;
  }
  ExprPtr parse_and() {
    ExprPtr expr = parse_not();
    while (accept_name("and")) expr = make(Expr::Kind::kBinary, expr, parse_not(), "and");
    return expr;
  }
  ExprPtr parse_not() {
    const DepthGuard guard(this);
    if (accept_name("not")) return make(Expr::Kind::kUnary, parse_not(), nullptr, "not");
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr expr = parse_math1();
    while (true) {
      std::string op;
      for (const char* candidate : {"==", "!=", "<=", ">=", "<", ">"})
        if (accept(candidate)) op = candidate;
      if (op.empty() && accept_name("in")) op = "in";
      if (op.empty() && at_name("not") && peek(1).kind == Token::Kind::kName && peek(1).text == "in") {
        token_ += 2;
        op = "not in";
      }
      if (op.empty()) return expr;
      expr = make(Expr::Kind::kBinary, expr, parse_math1(), op);
    }
  }
  ExprPtr parse_math1() {
    ExprPtr expr = parse_concat();
    while (at_operator("+") || at_operator("-")) {
      const std::string op = (*tokens_)[token_++].text;
      expr = make(Expr::Kind::kBinary, expr, parse_concat(), op);
    }
    return expr;
  }
  ExprPtr parse_concat() {
    ExprPtr expr = parse_math2();
    while (accept("~")) expr = make(Expr::Kind::kBinary, expr, parse_math2(), "~");
    return expr;
  }
  ExprPtr parse_math2() {
    ExprPtr expr = parse_pow();
    while (at_operator("*") || at_operator("/") || at_operator("//") || at_operator("%")) {
      const std::string op = (*tokens_)[token_++].text;
      expr = make(Expr::Kind::kBinary, expr, parse_pow(), op);
    }
    return expr;
  }
  ExprPtr parse_pow() {
    ExprPtr expr = parse_unary();
    while (accept("**")) expr = make(Expr::Kind::kBinary, expr, parse_unary(), "**");
    return expr;
  }
  ExprPtr parse_unary(bool with_filters = true) {
    const DepthGuard guard(this);
    ExprPtr expr;
    if (at_operator("-") || at_operator("+")) {
      const std::string op = (*tokens_)[token_++].text;
      expr = make(Expr::Kind::kUnary, parse_unary(false), nullptr, op);
    } else {
      expr = parse_postfix(parse_primary());
    }
    return with_filters ? parse_filters(expr) : expr;
  }

  ExprPtr parse_primary() {
    const Token token = peek();
    auto literal = [&](OrderedJson value) {
      auto expr = std::make_shared<Expr>(*make(Expr::Kind::kLiteral));
      expr->value = std::move(value);
      return expr;
    };
    switch (token.kind) {
      case Token::Kind::kString: {
        std::string text;
        while (peek().kind == Token::Kind::kString) text += (*tokens_)[token_++].text;  // "a" "b" is "ab"
        return literal(text);
      }
      case Token::Kind::kInteger: ++token_; return literal(token.integer);
      case Token::Kind::kFloat: ++token_; return literal(token.number);
      case Token::Kind::kName: {
        ++token_;
        if (token.text == "true" || token.text == "True") return literal(true);
        if (token.text == "false" || token.text == "False") return literal(false);
        if (token.text == "none" || token.text == "None") return literal(nullptr);
        return make(Expr::Kind::kName, nullptr, nullptr, token.text);
      }
      case Token::Kind::kOperator:
        if (accept("(")) {
          if (accept(")")) return std::make_shared<Expr>(*make(Expr::Kind::kTuple));
          ExprPtr first = parse_expression();
          if (!at_operator(",")) {
            expect(")");
            return first;
          }
          auto tuple = std::make_shared<Expr>(*make(Expr::Kind::kTuple));
          tuple->items.push_back(first);
          while (accept(",") && !at_operator(")")) tuple->items.push_back(parse_expression());
          expect(")");
          return tuple;
        }
        if (accept("[")) {
          auto list = std::make_shared<Expr>(*make(Expr::Kind::kList));
          while (!accept("]")) {
            list->items.push_back(parse_expression());
            if (!accept(",")) {
              expect("]");
              break;
            }
          }
          return list;
        }
        if (accept("{")) {
          auto dict = std::make_shared<Expr>(*make(Expr::Kind::kDict));
          while (!accept("}")) {
            dict->items.push_back(parse_expression());
            expect(":");
            dict->items.push_back(parse_expression());
            if (!accept(",")) {
              expect("}");
              break;
            }
          }
          return dict;
        }
        break;
      case Token::Kind::kEnd: fail(name_, line_, "an expression ends early");
    }
    fail(name_, line_, "unexpected '" + token.text + "'");
  }

  ExprPtr parse_postfix(ExprPtr expr) {
    while (true) {
      if (accept(".")) {
        if (peek().kind == Token::Kind::kInteger) {  // jinja2 reads foo.0 as foo[0]
          auto index = std::make_shared<Expr>(*make(Expr::Kind::kLiteral));
          index->value = (*tokens_)[token_++].integer;
          expr = make(Expr::Kind::kSubscript, expr, index);
        } else {
          expr = make(Expr::Kind::kAttribute, expr, nullptr, expect_name());
        }
      } else if (accept("[")) {
        expr = parse_subscript(expr);
      } else if (at_operator("(")) {
        expr = parse_call(make(Expr::Kind::kCall, expr));
      } else {
        return expr;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    ExprPtr start, stop, step;
    if (!at_operator(":")) start = parse_expression();
    if (!accept(":")) {
      expect("]");
      return make(Expr::Kind::kSubscript, target, start);
    }
    if (!at_operator(":") && !at_operator("]")) stop = parse_expression();
    if (accept(":") && !at_operator("]")) step = parse_expression();
    expect("]");
    auto slice = std::make_shared<Expr>(*make(Expr::Kind::kSlice, target, start));
    slice->c = stop;
    slice->items.push_back(step);
    return slice;
  }

  // Reads "(args, name=value)" into `call`'s items and kwargs.
  ExprPtr parse_call(ExprPtr call) {
    auto node = std::const_pointer_cast<Expr>(call);
    expect("(");
    while (!accept(")")) {
      if (peek().kind == Token::Kind::kName && at_operator("=", 1)) {
        const std::string key = expect_name();
        ++token_;
        node->kwargs.emplace_back(key, parse_expression());
      } else {
        node->items.push_back(parse_expression());
      }
      if (!accept(",")) {
        expect(")");
        break;
      }
    }
    return node;
  }

  ExprPtr parse_filters(ExprPtr expr) {
    while (true) {
      if (accept("|")) {
        const std::string name = expect_name();
        auto filter = make(Expr::Kind::kFilter, expr, nullptr, name);
        expr = at_operator("(") ? parse_call(filter) : filter;
      } else if (accept_name("is")) {
        const bool negated = accept_name("not");
        auto test = std::make_shared<Expr>(*make(Expr::Kind::kTest, expr, nullptr, expect_name()));
        test->negated = negated;
        if (at_operator("(")) {
          expr = parse_call(test);
        } else {
          const Token& next = peek();
          const bool argument = (next.kind == Token::Kind::kName || next.kind == Token::Kind::kString ||
                                 next.kind == Token::Kind::kInteger || next.kind == Token::Kind::kFloat ||
                                 at_operator("[") || at_operator("{")) &&
                                !at_name("else") && !at_name("or") && !at_name("and");
          if (argument) test->items.push_back(parse_postfix(parse_primary()));
          expr = test;
        }
      } else if (at_operator("(")) {
        expr = parse_call(make(Expr::Kind::kCall, expr));
      } else {
        return expr;
      }
    }
  }

  // Nesting (blocks in blocks, brackets in brackets, `not not ...`) beyond what any template needs is refused
  // before the recursion can run out of stack.
  struct DepthGuard {
    explicit DepthGuard(Parser* parser) : parser(parser) {
      if (++parser->depth_ > kMaxDepth) fail(parser->name_, parser->line_, "nested deeper than " + std::to_string(kMaxDepth));
    }
    ~DepthGuard() { --parser->depth_; }
    Parser* parser;
  };
  static constexpr int kMaxDepth = 200;

  std::vector<Piece> pieces_;
  const std::string& name_;
  int depth_ = 0;
  size_t piece_ = 0;
  const std::vector<Token>* tokens_ = nullptr;
  size_t token_ = 0;
  int line_ = 1;
};

}  // namespace

std::shared_ptr<const Program> parse(const std::string& source, const std::string& name) {
  auto program = std::make_shared<Program>();
  program->name = name;
  program->body = Parser(Scanner(source, name).scan(), name).parse_template();
  return program;
}

}  // namespace autotrain::jinja
