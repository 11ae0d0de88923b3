// The Jinja2 subset that chat templates are written in, rendered as transformers' apply_chat_template does
// (jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loop controls; its tojson,
// raise_exception, strftime_now, namespace and dict globals). Values are JSON with insertion-ordered objects,
// as Python dicts are.
//
// Supported: text, {{ }}, {% %} and {# #} with `-` whitespace control; if / elif / else, for (tuple targets,
// an `if` filter, else, loop.index/index0/first/last/length/revindex, break, continue), set (names,
// namespace attributes, set blocks), generation blocks (rendered as their body), macros with positional and
// keyword parameters; Python's operators, literals, slices, conditional expressions; the filters and tests
// and the str / dict methods that published chat templates use. Anything else is refused when the template
// is parsed, with the line.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace autotrain {

using OrderedJson = nlohmann::ordered_json;

namespace jinja {
struct Program;
}

class JinjaTemplate {
 public:
  // Parses `source`; throws Error "<name>: line N: ..." for syntax this subset does not read.
  JinjaTemplate(const std::string& source, const std::string& name);
  // Renders with `context`'s keys as variables. raise_exception(message) in the template throws Error
  // "<name>: <message>"; so does a runtime error (an undefined attribute, a type mismatch).
  std::string render(const OrderedJson& context) const;

 private:
  std::shared_ptr<const jinja::Program> program_;
};

}  // namespace autotrain
