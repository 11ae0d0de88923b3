// The parsed form of a Jinja template (src/jinja_parser.cpp builds it, src/jinja_render.cpp walks it).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autotrain/jinja.h"

namespace autotrain::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    kLiteral,      // value
    kName,         // name
    kList,         // items
    kTuple,        // items
    kDict,         // items: key, value, key, value, ...
    kAttribute,    // a.name
    kSubscript,    // a[b]
    kSlice,        // a[b:c:d] (each may be null)
    kCall,         // a(items, kwargs)
    kFilter,       // a | name(items, kwargs)
    kTest,         // a is [not] name(items)
    kUnary,        // name ("not", "-", "+") a
    kBinary,       // a name b (arithmetic, comparison, "and", "or", "in", "not in", "~")
    kConditional,  // a if b else c (c may be null)
  };
  Kind kind;
  int line = 0;
  OrderedJson value;
  std::string name;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr a, b, c;
  bool negated = false;  // kTest: "is not"
};

struct Node;
using Body = std::vector<std::shared_ptr<const Node>>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kBreak, kContinue, kMacro };
  Kind kind;
  int line = 0;
  std::string text;                                 // kText
  ExprPtr expr;                                     // kOutput, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;   // kIf: (condition, body); the else branch has no condition
  std::vector<std::string> targets;                 // kFor loop variables; kSet / kSetBlock: name [, attribute]
  ExprPtr filter;                                   // kFor: "for x in y if filter"
  Body body, else_body;                             // kFor, kSetBlock, kMacro (name in targets)
  std::vector<std::pair<std::string, ExprPtr>> parameters;  // kMacro: name, default (may be null)
};

struct Program {
  std::string name;
  Body body;
};

// Parses a template (src/jinja_parser.cpp).
std::shared_ptr<const Program> parse(const std::string& source, const std::string& name);

}  // namespace autotrain::jinja
