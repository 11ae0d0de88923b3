#include "autotrain/chat_template.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "jinja_lexer.h"
#include "tokenizer_parts.h"

namespace autotrain {
namespace fs = std::filesystem;

namespace {

// AutoTrain's template for a tokenizer that has none (DEFAULT_CHAT_TEMPLATE in trainers/clm/utils.py): ChatML.
const char* kFallbackTemplate =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// A "chat_template" value (tokenizer_config.json's, or chat_template.json's): a string, or
// [{"name": ..., "template": ...}] of which "default". Nothing for null.
std::optional<std::string> template_of(const nlohmann::json& value, const std::string& path) {
  if (value.is_null()) return std::nullopt;
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& named : value) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string())
        return named["template"].get<std::string>();
    }
    throw Error(path + ": \"chat_template\" lists named templates but none is named \"default\"");
  }
  throw Error(path + ": \"chat_template\" must be a string or a list of {\"name\", \"template\"}");
}

// The start of a value for an error message; bytes that are not UTF-8 shown as U+FFFD, not thrown over.
std::string preview(const OrderedJson& value) {
  return value.dump(-1, ' ', false, OrderedJson::error_handler_t::replace).substr(0, 60);
}

class LiteralParser {
 public:
  explicit LiteralParser(const std::string& text) : text_(text) {}

  OrderedJson parse() {
    OrderedJson value = parse_value();
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("not a Python literal: " + what + " at character " + std::to_string(pos_ + 1));
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  OrderedJson parse_value() {
    if (++depth_ > kMaxDepth) fail("values nested deeper than " + std::to_string(kMaxDepth));
    OrderedJson value = parse_plain_value();
    --depth_;
    return value;
  }

  OrderedJson parse_plain_value() {
    skip_space();
    if (pos_ >= text_.size()) fail("the text ends early");
    const char c = text_[pos_];
    if (c == '[' || c == '(') return parse_sequence(c == '[' ? ']' : ')');
    if (c == '{') return parse_dict();
    if (c == '\'' || c == '"' || ((c == 'u' || c == 'r' || c == 'U' || c == 'R') && pos_ + 1 < text_.size() &&
                                  (text_[pos_ + 1] == '\'' || text_[pos_ + 1] == '"'))) {
      std::string joined;
      do joined += parse_string(); while (at_string());  // 'a' 'b' is 'ab'
      return joined;
    }
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return parse_number();
    size_t end = pos_;
    while (end < text_.size() && std::isalpha(static_cast<unsigned char>(text_[end]))) ++end;
    const std::string word = text_.substr(pos_, end - pos_);
    pos_ = end;
    if (word == "True" || word == "true") return true;
    if (word == "False" || word == "false") return false;
    if (word == "None" || word == "null") return nullptr;
    pos_ -= word.size();
    fail(word.empty() ? std::string("unexpected character") : "unknown name \"" + word + "\"");
  }

  bool at_string() {
    skip_space();
    return pos_ < text_.size() && (text_[pos_] == '\'' || text_[pos_] == '"');
  }

  std::string parse_string() {
    bool raw = false;
    if (text_[pos_] != '\'' && text_[pos_] != '"') raw = std::tolower(static_cast<unsigned char>(text_[pos_++])) == 'r';
    const char quote = text_[pos_];
    const bool triple = text_.compare(pos_, 3, std::string(3, quote)) == 0;
    const std::string closer = triple ? std::string(3, quote) : std::string(1, quote);
    const size_t start = pos_ + closer.size();
    size_t end = start;
    while (true) {
      if (end >= text_.size() || (!triple && text_[end] == '\n')) fail("a string is never closed");
      if (text_[end] == '\\') {
        end += 2;
        continue;
      }
      if (text_.compare(end, closer.size(), closer) == 0) break;
      ++end;
    }
    pos_ = end + closer.size();
    const std::string body = text_.substr(start, end - start);
    return raw ? body : jinja::unescape(body);
  }

  OrderedJson parse_number() {
    const char* begin = text_.c_str() + pos_;
    char* end = nullptr;
    size_t length = 0;
    while (pos_ + length < text_.size() && (std::isalnum(static_cast<unsigned char>(begin[length])) ||
                                            std::string("+-._").find(begin[length]) != std::string::npos))
      ++length;
    std::string digits;
    for (size_t i = 0; i < length; ++i)
      if (begin[i] != '_') digits += begin[i];
    const bool is_float = digits.find_first_of(".eE") != std::string::npos;
    errno = 0;
    OrderedJson value;
    if (is_float) value = std::strtod(digits.c_str(), &end);
    else value = static_cast<int64_t>(std::strtoll(digits.c_str(), &end, 10));
    if (end != digits.c_str() + digits.size() || errno == ERANGE) fail("a malformed number");
    pos_ += length;
    return value;
  }

  OrderedJson parse_sequence(char closer) {
    ++pos_;
    OrderedJson list = OrderedJson::array();
    while (!accept(closer)) {
      list.push_back(parse_value());
      if (!accept(',')) {
        if (!accept(closer)) fail(std::string("expected ',' or '") + closer + "'");
        break;
      }
    }
    return list;
  }

  OrderedJson parse_dict() {
    ++pos_;
    OrderedJson dict = OrderedJson::object();
    while (!accept('}')) {
      OrderedJson key = parse_value();
      if (!key.is_string()) fail("a dict key that is not a string");
      if (!accept(':')) fail("expected ':'");
      dict[key.get<std::string>()] = parse_value();
      if (!accept(',')) {
        if (!accept('}')) fail("expected ',' or '}'");
        break;
      }
    }
    return dict;
  }

  static constexpr int kMaxDepth = 100;  // Python's parser gives up near 200: deeper is an attack, not a chat
  const std::string& text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

nlohmann::json chat_template_value(const std::string& model_dir, std::string* origin) {
  const tokenization::TokenizerConfig config = tokenization::read_tokenizer_config(model_dir);
  if (!config.path.empty() && !config.chat_template.is_null()) {
    *origin = config.path;
    return config.chat_template;
  }
  const std::string jinja_file = (fs::path(model_dir) / "chat_template.jinja").string();
  const std::string json_file = (fs::path(model_dir) / "chat_template.json").string();
  if (fs::exists(jinja_file)) {
    *origin = jinja_file;
    return read_file(jinja_file);
  }
  if (fs::exists(json_file)) {
    *origin = json_file;
    const nlohmann::json document = tokenization::read_json_file(json_file);
    return document.is_object() ? document.value("chat_template", nlohmann::json()) : nlohmann::json();
  }
  return nullptr;
}

ChatTemplate::ChatTemplate(const std::string& source, const std::string& name, OrderedJson special_tokens)
    : source_(source), template_(std::make_shared<JinjaTemplate>(source, name)),
      special_tokens_(std::move(special_tokens)) {}

ChatTemplate ChatTemplate::load(const std::string& model_dir) {
  const tokenization::TokenizerConfig config = tokenization::read_tokenizer_config(model_dir);
  OrderedJson special_tokens = OrderedJson::object();
  const std::pair<const char*, const std::optional<std::string>*> tokens[] = {
      {"bos_token", &config.bos_token}, {"eos_token", &config.eos_token}, {"unk_token", &config.unk_token},
      {"pad_token", &config.pad_token}};
  for (const auto& [key, value] : tokens)
    if (*value) special_tokens[key] = **value;

  std::string origin;
  const std::optional<std::string> source = template_of(chat_template_value(model_dir, &origin), origin);
  if (source) {
    const bool in_config = fs::path(origin).filename() == "tokenizer_config.json";
    return ChatTemplate(*source, in_config ? origin + " chat_template" : origin, special_tokens);
  }
  ChatTemplate fallback(kFallbackTemplate, model_dir + " (no chat template: AutoTrain's ChatML default)",
                        special_tokens);
  fallback.fallback_ = true;
  return fallback;
}

std::string ChatTemplate::apply(const OrderedJson& messages, bool add_generation_prompt,
                                const OrderedJson& variables) const {
  if (!variables.is_object()) throw Error("chat template variables must be an object, not " + preview(variables));
  if (!messages.is_array()) throw Error("a conversation must be a list of messages, not " + preview(messages));
  OrderedJson cleaned = OrderedJson::array();
  for (const auto& message : messages) {
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string())
      throw Error("each message of a conversation must be an object with a \"role\" (and \"content\"), not " +
                  preview(message));
    OrderedJson kept = OrderedJson::object();
    for (const auto& [key, value] : message.items())
      if (!value.is_null()) kept[key] = value;  // transformers drops keys set to None
    cleaned.push_back(std::move(kept));
  }
  OrderedJson context = special_tokens_;
  for (const auto& [name, value] : variables.items()) {
    if (name == "messages" || name == "add_generation_prompt" || name == "tools" || name == "documents")
      throw Error("the chat template variable \"" + name + "\" is set by autotrain itself; give another name");
    context[name] = value;
  }
  context["messages"] = std::move(cleaned);
  context["add_generation_prompt"] = add_generation_prompt;
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  return template_->render(context);
}

OrderedJson conversation_of(const OrderedJson& cell, const std::string& where) {
  if (cell.is_array()) return cell;
  if (!cell.is_string())
    throw Error(where + ": expected a conversation (a list of {\"role\", \"content\"} messages), found " +
                preview(cell));
  const std::string& text = cell.get_ref<const std::string&>();
  OrderedJson parsed;
  try {
    parsed = parse_python_literal(text);
  } catch (const Error& e) {
    throw Error(where + ": the conversation is neither a JSON list nor a Python list literal (" + e.what() +
                "): " + text.substr(0, 60));
  }
  if (!parsed.is_array()) throw Error(where + ": expected a list of messages, found " + text.substr(0, 60));
  return parsed;
}

OrderedJson parse_python_literal(const std::string& text) { return LiteralParser(text).parse(); }

}  // namespace autotrain
