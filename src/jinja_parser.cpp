// The tree of src/jinja_ast.h from the pieces of src/jinja_lexer.h: statements, and expressions with jinja2's
// operator precedence (jinja2/parser.py).
#include <set>

#include "jinja_ast.h"
#include "jinja_lexer.h"

namespace autotrain::jinja {
namespace {

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

  // A new node, still open to the caller (the tree holds it as ExprPtr, const, once built).
  std::shared_ptr<Expr> make(Expr::Kind kind, ExprPtr a = nullptr, ExprPtr b = nullptr, const std::string& name = "") {
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
      auto node = make(Expr::Kind::kConditional, expr, parse_or());
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
        if (op.empty() && accept(candidate)) op = candidate;
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
      auto expr = make(Expr::Kind::kLiteral);
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
          if (accept(")")) return make(Expr::Kind::kTuple);
          ExprPtr first = parse_expression();
          if (!at_operator(",")) {
            expect(")");
            return first;
          }
          auto tuple = make(Expr::Kind::kTuple);
          tuple->items.push_back(first);
          while (accept(",") && !at_operator(")")) tuple->items.push_back(parse_expression());
          expect(")");
          return tuple;
        }
        if (accept("[")) {
          auto list = make(Expr::Kind::kList);
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
          auto dict = make(Expr::Kind::kDict);
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
          auto index = make(Expr::Kind::kLiteral);
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
    auto slice = make(Expr::Kind::kSlice, target, start);
    slice->c = stop;
    slice->items.push_back(step);
    return slice;
  }

  // Reads "(args, name=value)" into `node`'s items and kwargs.
  ExprPtr parse_call(std::shared_ptr<Expr> node) {
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
        auto test = make(Expr::Kind::kTest, expr, nullptr, expect_name());
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
  program->body = Parser(scan(source, name), name).parse_template();
  return program;
}

}  // namespace autotrain::jinja
