// The Jinja builtins chat templates use, with Python's semantics where the output shows them: str() and
// repr() of values, json.dumps as transformers' tojson calls it, str methods on UTF-8 text by character.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "autotrain/text_util.h"
#include "jinja_value.h"
#include "tokenizer_parts.h"

namespace autotrain::jinja {
namespace {

const char* kPythonSpace = " \t\n\r\v\f";

std::string type_name(const Value& value) {
  if (value.undefined) return "undefined";
  switch (value.data.type()) {
    case OrderedJson::value_t::null: return "none";
    case OrderedJson::value_t::boolean: return "bool";
    case OrderedJson::value_t::string: return "str";
    case OrderedJson::value_t::array: return "list";
    case OrderedJson::value_t::object: return "dict";
    case OrderedJson::value_t::number_float: return "float";
    default: return "int";
  }
}

const std::string& as_string(const Value& value, const std::string& what) {
  if (!value.data.is_string()) throw Failure(what + " expects a string, not " + type_name(value));
  return value.data.get_ref<const std::string&>();
}

int64_t as_integer(const Value& value, const std::string& what) {
  if (!value.data.is_number_integer()) throw Failure(what + " expects an integer, not " + type_name(value));
  return value.data.get<int64_t>();
}

std::string python_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[40];
  for (int precision = 1; precision <= 17; ++precision) {  // the shortest digits that read back as x
    std::snprintf(buffer, sizeof buffer, "%.*e", precision - 1, x);
    if (std::strtod(buffer, nullptr) == x) break;
  }
  std::string text(buffer);
  const size_t e = text.find('e');
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string sign = text[0] == '-' ? "-" : "";
  std::string digits;
  for (size_t i = sign.size(); i < e; ++i)
    if (text[i] != '.') digits += text[i];
  if (exponent < -4 || exponent >= 16) {  // repr's scientific form: 1e+16, 1.5e-07
    std::string mantissa = digits.substr(0, 1);
    if (digits.size() > 1) mantissa.append(".").append(digits, 1, std::string::npos);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return sign + mantissa + exp;
  }
  if (exponent < 0) return sign + "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  const size_t point = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= point) return sign + digits + std::string(point - digits.size(), '0') + ".0";
  return sign + digits.substr(0, point) + "." + digits.substr(point);
}

std::string python_string_repr(const std::string& text) {
  const char quote = text.find('\'') != std::string::npos && text.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : text) {
    if (c == '\\' || c == static_cast<unsigned char>(quote)) out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + quote;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void dump_json(const OrderedJson& value, int indent, int level, std::string& out) {
  const bool pretty = indent >= 0;
  const std::string item_separator = pretty ? "," : ", ";
  auto newline = [&](int depth) {
    if (!pretty) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * depth), ' ');
  };
  if (value.is_array() && !value.empty()) {
    out += "[";
    for (size_t i = 0; i < value.size(); ++i) {
      if (i) out += item_separator;
      newline(level + 1);
      dump_json(value[i], indent, level + 1, out);
    }
    newline(level);
    out += "]";
  } else if (value.is_object() && !value.empty()) {
    out += "{";
    bool first = true;
    for (const auto& [key, item] : value.items()) {
      if (!first) out += item_separator;
      first = false;
      newline(level + 1);
      out += json_string(key) + ": ";
      dump_json(item, indent, level + 1, out);
    }
    newline(level);
    out += "}";
  } else if (value.is_array()) {
    out += "[]";
  } else if (value.is_object()) {
    out += "{}";
  } else if (value.is_string()) {
    out += json_string(value.get_ref<const std::string&>());
  } else if (value.is_number_float()) {
    const double x = value.get<double>();
    out += std::isnan(x) ? "NaN" : std::isinf(x) ? (x > 0 ? "Infinity" : "-Infinity") : python_float(x);
  } else {
    out += value.dump();  // integers, true, false, null
  }
}

std::string strip(const std::string& text, const std::string& characters, bool left, bool right) {
  const size_t begin = left ? text.find_first_not_of(characters) : 0;
  if (begin == std::string::npos) return "";
  const size_t end = right ? text.find_last_not_of(characters) : text.size() - 1;
  return text.substr(begin, end - begin + 1);
}

int lower_ascii(int c) { return std::tolower(c); }
int upper_ascii(int c) { return std::toupper(c); }

std::string map_ascii(std::string text, int (*convert)(int)) {
  for (char& c : text) c = static_cast<char>(convert(static_cast<unsigned char>(c)));
  return text;
}

std::string title_case(std::string text, bool every_word) {
  bool word_start = true;
  for (char& c : text) {
    const auto u = static_cast<unsigned char>(c);
    c = static_cast<char>(word_start ? std::toupper(u) : std::tolower(u));
    if (every_word) word_start = !std::isalpha(u);
    else word_start = false;
  }
  return text;
}

OrderedJson split_text(const std::string& text, const Value* separator, int64_t max_splits) {
  OrderedJson parts = OrderedJson::array();
  if (!separator || separator->data.is_null()) {  // runs of whitespace, none at the ends
    size_t pos = text.find_first_not_of(kPythonSpace);
    while (pos != std::string::npos) {
      if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) {
        parts.push_back(strip(text.substr(pos), kPythonSpace, false, true));
        break;
      }
      const size_t end = text.find_first_of(kPythonSpace, pos);
      parts.push_back(text.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
      pos = end == std::string::npos ? end : text.find_first_not_of(kPythonSpace, end);
    }
    return parts;
  }
  const std::string& sep = as_string(*separator, "split");
  if (sep.empty()) throw Failure("split: empty separator");
  size_t pos = 0;
  while (true) {
    const size_t found = text.find(sep, pos);
    if (found == std::string::npos || (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits)) {
      parts.push_back(text.substr(pos));
      return parts;
    }
    parts.push_back(text.substr(pos, found - pos));
    pos = found + sep.size();
  }
}

bool affix_matches(const std::string& text, const Value& affix, bool prefix) {
  std::vector<OrderedJson> candidates = affix.data.is_array() ? iterate(affix) : std::vector<OrderedJson>{affix.data};
  for (const OrderedJson& candidate : candidates) {
    const std::string a = as_string(Value(candidate), prefix ? "startswith" : "endswith");
    if (a.size() <= text.size() && text.compare(prefix ? 0 : text.size() - a.size(), a.size(), a) == 0) return true;
  }
  return false;
}

Value attribute_of(const OrderedJson& item, const std::string& path) {
  Value value(item);
  for (const std::string& key : split(path, '.')) {
    if (!value.data.is_object() || !value.data.contains(key)) return Value::make_undefined();
    value = Value(value.data[key]);
  }
  return value;
}

int64_t number_of_items(const Value& value) {
  if (value.data.is_string()) return static_cast<int64_t>(code_points(value.data.get_ref<const std::string&>()).size());
  if (value.data.is_array() || value.data.is_object()) return static_cast<int64_t>(value.data.size());
  if (value.undefined) return 0;
  throw Failure("length of " + type_name(value));
}

}  // namespace

const Value* Arguments::find(size_t index, const std::string& name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [key, value] : keyword)
    if (key == name) return &value;
  return nullptr;
}

bool truthy(const Value& value) {
  if (value.undefined) return false;
  if (value.space || !value.function.empty() || value.macro) return true;
  const OrderedJson& d = value.data;
  if (d.is_null()) return false;
  if (d.is_boolean()) return d.get<bool>();
  if (d.is_number_float()) return d.get<double>() != 0.0;
  if (d.is_number()) return d.get<int64_t>() != 0;
  if (d.is_string()) return !d.get_ref<const std::string&>().empty();  // json::empty() is false for any string
  if (d.is_array() || d.is_object()) return !d.empty();
  return true;
}

std::string to_text(const Value& value) {
  if (value.undefined) return "";
  if (value.space) return "<Namespace>";
  const OrderedJson& d = value.data;
  if (d.is_string()) return d.get<std::string>();
  if (value.tuple) {  // ('t', 1); a one-item tuple keeps its comma
    std::string text = python_repr(d);  // [a, b]
    text.front() = '(';
    text.pop_back();
    text += d.size() == 1 ? ",)" : ")";
    return text;
  }
  return python_repr(d);
}

std::string python_repr(const OrderedJson& d) {
  if (d.is_null()) return "None";
  if (d.is_boolean()) return d.get<bool>() ? "True" : "False";
  if (d.is_number_float()) return python_float(d.get<double>());
  if (d.is_number()) return d.dump();
  if (d.is_string()) return python_string_repr(d.get_ref<const std::string&>());
  std::vector<std::string> parts;
  if (d.is_array()) {
    for (const auto& item : d) parts.push_back(python_repr(item));
    return std::string("[").append(join(parts, ", ")).append("]");
  }
  for (const auto& [key, item] : d.items()) parts.push_back(python_string_repr(key) + ": " + python_repr(item));
  return std::string("{").append(join(parts, ", ")).append("}");
}

std::string to_json_text(const OrderedJson& value, int indent) {
  std::string out;
  dump_json(value, indent, 0, out);
  return out;
}

std::vector<std::string> code_points(const std::string& text) {
  std::vector<std::string> characters;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t length = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    characters.push_back(text.substr(i, length));
    i += length;
  }
  return characters;
}

bool equal(const Value& a, const Value& b) {
  if (a.undefined || b.undefined) return a.undefined && b.undefined;
  if (a.data.is_number() && b.data.is_number() && !a.data.is_boolean() && !b.data.is_boolean())
    return a.data.get<double>() == b.data.get<double>();
  return a.data == b.data;
}

std::vector<OrderedJson> iterate(const Value& value) {
  std::vector<OrderedJson> items;
  if (value.undefined) return items;
  const OrderedJson& d = value.data;
  if (d.is_array()) {
    items.assign(d.begin(), d.end());
  } else if (d.is_object()) {
    for (const auto& [key, item] : d.items()) items.emplace_back(key);
  } else if (d.is_string()) {
    for (const std::string& c : code_points(d.get_ref<const std::string&>())) items.emplace_back(c);
  } else {
    throw Failure("cannot iterate over " + type_name(value));
  }
  return items;
}

Value apply_filter(const std::string& name, const Value& value, const Arguments& args) {
  const OrderedJson& d = value.data;
  auto text = [&] { return to_text(value); };
  if (name == "trim") {
    const Value* characters = args.find(0, "chars");
    return strip(text(), characters ? as_string(*characters, "trim") : kPythonSpace, true, true);
  }
  if (name == "length" || name == "count") return number_of_items(value);
  if (name == "tojson") {
    const Value* indent = args.find(0, "indent");
    return to_json_text(d, indent && !indent->data.is_null() ? static_cast<int>(as_integer(*indent, "tojson")) : -1);
  }
  if (name == "string" || name == "safe" || name == "e" || name == "escape") {
    if (name == "e" || name == "escape") {  // autoescape is off, but the filter still escapes
      std::string out;
      for (char c : text()) {
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '"') out += "&#34;";
        else if (c == '\'') out += "&#39;";
        else out += c;
      }
      return out;
    }
    return text();
  }
  if (name == "lower") return map_ascii(text(), lower_ascii);
  if (name == "upper") return map_ascii(text(), upper_ascii);
  if (name == "title") return title_case(text(), true);
  if (name == "capitalize") return title_case(text(), false);
  if (name == "int") {
    if (d.is_number_integer()) return d.get<int64_t>();
    if (d.is_number()) {
      const double x = d.get<double>();
      if (!(std::fabs(x) < 9.2e18)) throw Failure("int of " + python_float(x) + " is beyond 64 bits");
      return static_cast<int64_t>(x);
    }
    if (d.is_string()) {
      char* end = nullptr;
      const std::string& s = d.get_ref<const std::string&>();
      const long long parsed = std::strtoll(s.c_str(), &end, 10);
      return end && *end == '\0' && !s.empty() ? static_cast<int64_t>(parsed) : int64_t{0};
    }
    return int64_t{0};
  }
  if (name == "float") return d.is_number() ? d.get<double>() : d.is_string() ? std::strtod(text().c_str(), nullptr) : 0.0;
  if (name == "abs") {
    if (d.is_number_float()) return std::fabs(d.get<double>());
    const int64_t i = as_integer(value, "abs");
    if (i == INT64_MIN) throw Failure("abs of the smallest 64-bit integer");
    return i < 0 ? -i : i;
  }
  if (name == "first" || name == "last") {
    std::vector<OrderedJson> items = iterate(value);
    if (items.empty()) return Value::make_undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "default" || name == "d") {
    const Value* boolean = args.find(1, "boolean");
    const bool use_default = value.undefined || (boolean && truthy(*boolean) && !truthy(value));
    if (!use_default) return value;
    const Value* fallback = args.find(0, "default_value");
    return fallback ? *fallback : Value(std::string());
  }
  if (name == "join") {
    const Value* separator = args.find(0, "d");
    const Value* attribute = args.find(1, "attribute");
    std::string out;
    bool first = true;
    for (const OrderedJson& item : iterate(value)) {
      if (!first && separator) out += to_text(*separator);
      first = false;
      out += to_text(attribute ? attribute_of(item, to_text(*attribute)) : Value(item));
    }
    return out;
  }
  if (name == "list") return OrderedJson(iterate(value));
  if (name == "items") {
    if (value.undefined) return OrderedJson::array();
    return call_method(value, "items", {});
  }
  if (name == "reverse") {
    if (d.is_string()) {
      std::vector<std::string> characters = code_points(d.get<std::string>());
      std::reverse(characters.begin(), characters.end());
      return join(characters, "");
    }
    std::vector<OrderedJson> items = iterate(value);
    std::reverse(items.begin(), items.end());
    return OrderedJson(items);
  }
  if (name == "replace") {
    const Value* count = args.find(2, "count");
    return tokenization::replace_all(text(), to_text(*args.find(0, "old")), to_text(*args.find(1, "new")),
                                     count ? as_integer(*count, "replace") : -1);
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attribute = name == "selectattr" || name == "rejectattr";
    const bool keep = name == "selectattr" || name == "select";
    const size_t first_test = by_attribute ? 1 : 0;
    if (by_attribute && args.positional.empty()) throw Failure(name + " needs an attribute");
    Arguments test_arguments;
    for (size_t i = first_test + 1; i < args.positional.size(); ++i) test_arguments.positional.push_back(args.positional[i]);
    OrderedJson kept = OrderedJson::array();
    for (const OrderedJson& item : iterate(value)) {
      const Value subject = by_attribute ? attribute_of(item, to_text(args.positional[0])) : Value(item);
      const bool passed = args.positional.size() > first_test
                              ? apply_test(to_text(args.positional[first_test]), subject, test_arguments)
                              : truthy(subject);
      if (passed == keep) kept.push_back(item);
    }
    return kept;
  }
  if (name == "map") {
    OrderedJson mapped = OrderedJson::array();
    const Value* attribute = args.find(99, "attribute");
    for (const OrderedJson& item : iterate(value)) {
      if (attribute) {
        Value picked = attribute_of(item, to_text(*attribute));
        const Value* fallback = args.find(99, "default");
        mapped.push_back(picked.undefined && fallback ? fallback->data : picked.data);
      } else {
        if (args.positional.empty()) throw Failure("map needs a filter name or attribute=");
        Arguments rest;
        rest.positional.assign(args.positional.begin() + 1, args.positional.end());
        mapped.push_back(apply_filter(to_text(args.positional[0]), Value(item), rest).data);
      }
    }
    return mapped;
  }
  if (name == "indent") {
    const Value* width = args.find(0, "width");
    const Value* first = args.find(1, "first");
    const std::string pad(static_cast<size_t>(std::clamp<int64_t>(width ? as_integer(*width, "indent") : 4, 0, 64)), ' ');
    std::string out, line_text = text();
    for (size_t i = 0; i < line_text.size(); ++i) {
      out += line_text[i];
      if (line_text[i] == '\n' && i + 1 < line_text.size() && line_text[i + 1] != '\n') out += pad;
    }
    return (first && truthy(*first) ? pad : "") + out;
  }
  throw Failure("the filter \"" + name + "\" is not supported by autotrain's chat template renderer");
}

bool apply_test(const std::string& name, const Value& value, const Arguments& args) {
  const OrderedJson& d = value.data;
  const bool defined = !value.undefined;
  auto argument = [&]() -> const Value& {
    if (args.positional.empty()) throw Failure("the test \"" + name + "\" needs an argument");
    return args.positional[0];
  };
  if (name == "defined") return defined;
  if (name == "undefined") return !defined;
  if (name == "none") return defined && d.is_null();
  if (name == "boolean") return defined && d.is_boolean();
  if (name == "true") return defined && d.is_boolean() && d.get<bool>();
  if (name == "false") return defined && d.is_boolean() && !d.get<bool>();
  if (name == "integer") return defined && d.is_number_integer() && !d.is_boolean();
  if (name == "float") return defined && d.is_number_float();
  if (name == "number") return defined && d.is_number() && !d.is_boolean();
  if (name == "string") return defined && d.is_string();
  if (name == "mapping") return defined && (d.is_object() || value.space);
  if (name == "iterable") return defined && (d.is_array() || d.is_object() || d.is_string());
  if (name == "sequence") return defined && (d.is_array() || d.is_object() || d.is_string());
  if (name == "callable") return !value.function.empty() || value.macro;
  if (name == "odd" || name == "even") return (as_integer(value, name) % 2 != 0) == (name == "odd");
  if (name == "divisibleby") return as_integer(value, name) % as_integer(argument(), name) == 0;
  if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") return equal(value, argument());
  if (name == "ne" || name == "!=") return !equal(value, argument());
  if (name == "in") {
    Value container = argument();
    for (const OrderedJson& item : iterate(container))
      if (equal(Value(item), value)) return true;
    return false;
  }
  if (name == "lower" || name == "upper") {
    const std::string& s = as_string(value, name);
    return s == map_ascii(s, name == "lower" ? lower_ascii : upper_ascii);
  }
  throw Failure("the test \"" + name + "\" is not supported by autotrain's chat template renderer");
}

Value call_method(const Value& value, const std::string& name, const Arguments& args) {
  const OrderedJson& d = value.data;
  if (d.is_string() && !value.undefined) {
    const std::string& s = d.get_ref<const std::string&>();
    const Value* first = args.find(0, "");
    auto characters = [&] { return first && !first->data.is_null() ? as_string(*first, name) : kPythonSpace; };
    if (name == "strip") return strip(s, characters(), true, true);
    if (name == "lstrip") return strip(s, characters(), true, false);
    if (name == "rstrip") return strip(s, characters(), false, true);
    if (name == "upper") return map_ascii(s, upper_ascii);
    if (name == "lower") return map_ascii(s, lower_ascii);
    if (name == "title") return title_case(s, true);
    if (name == "capitalize") return title_case(s, false);
    if ((name == "startswith" || name == "endswith") && first) return affix_matches(s, *first, name == "startswith");
    if (name == "split") {
      const Value* count = args.find(1, "maxsplit");
      return split_text(s, args.find(0, "sep"), count ? as_integer(*count, "split") : -1);
    }
    if (name == "replace" && args.positional.size() >= 2)
      return tokenization::replace_all(s, to_text(args.positional[0]), to_text(args.positional[1]),
                                       args.positional.size() > 2 ? as_integer(args.positional[2], "replace") : -1);
    if (name == "find" && first) {
      const size_t found = s.find(as_string(*first, "find"));
      return found == std::string::npos ? int64_t{-1} : static_cast<int64_t>(code_points(s.substr(0, found)).size());
    }
    if (name == "join" && first) {
      std::vector<std::string> parts;
      for (const OrderedJson& item : iterate(*first)) parts.push_back(as_string(Value(item), "join"));
      return join(parts, s);
    }
  }
  if (d.is_object() && !value.undefined) {
    if (name == "items") {
      OrderedJson pairs = OrderedJson::array();
      for (const auto& [key, item] : d.items()) pairs.push_back(OrderedJson::array({key, item}));
      return pairs;
    }
    if (name == "keys" || name == "values") {
      OrderedJson out = OrderedJson::array();
      for (const auto& [key, item] : d.items()) out.push_back(name == "keys" ? OrderedJson(key) : item);
      return out;
    }
    if (name == "get" && !args.positional.empty()) {
      const std::string key = to_text(args.positional[0]);
      if (d.contains(key)) return d.at(key);
      return args.positional.size() > 1 ? args.positional[1] : Value(nullptr);
    }
  }
  throw Failure("the method " + type_name(value) + "." + name + "() is not supported by autotrain's chat template "
                "renderer");
}

}  // namespace autotrain::jinja
