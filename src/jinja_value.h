// What a Jinja expression evaluates to, and the builtins that act on it: filters, tests, str / dict methods and
// Python's formatting (src/jinja_builtins.cpp). Used by src/jinja_render.cpp only.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "jinja_ast.h"

namespace autotrain::jinja {

// A runtime error without its place; the renderer adds the template's name and line.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Value {
  OrderedJson data;
  bool undefined = false;                  // jinja2's Undefined: prints as "", false, not iterable
  bool tuple = false;                      // a tuple literal, printed (a, b); inside other values it is a list
  std::shared_ptr<OrderedJson> space;      // namespace(): shared, so `set ns.x` is seen through every copy
  std::string function;                    // a global: raise_exception, namespace, range, strftime_now, dict
  std::shared_ptr<const Node> macro;       // a {% macro %}

  Value() = default;
  // From anything JSON holds (strings, numbers, bools, JSON): builtins return plain C++ values.
  template <typename T, typename = std::enable_if_t<!std::is_same_v<std::decay_t<T>, Value>>>
  Value(T&& json) : data(std::forward<T>(json)) {}  // NOLINT(google-explicit-constructor)
  static Value make_undefined() {
    Value value;
    value.undefined = true;
    return value;
  }
};

struct Arguments {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  // The argument at `index` or named `name`; null when neither was given.
  const Value* find(size_t index, const std::string& name) const;
};

bool truthy(const Value& value);
std::string to_text(const Value& value);                          // Python's str()
std::string python_repr(const OrderedJson& value);                // Python's repr(), as {{ [1, 'a'] }} prints
std::string to_json_text(const OrderedJson& value, int indent);   // json.dumps(ensure_ascii=False), indent < 0: none
std::vector<std::string> code_points(const std::string& text);    // UTF-8 text cut into characters
bool equal(const Value& a, const Value& b);
// The items a for loop visits: a list's elements, a dict's keys, a string's characters; none for undefined.
std::vector<OrderedJson> iterate(const Value& value);

Value apply_filter(const std::string& name, const Value& value, const Arguments& arguments);
bool apply_test(const std::string& name, const Value& value, const Arguments& arguments);
// value.name(arguments) for the str, dict and list methods templates use.
Value call_method(const Value& value, const std::string& name, const Arguments& arguments);

}  // namespace autotrain::jinja
