// Tokenizer::load, tokenizer_config.json and the UTF-8 helpers both implementations use.
#include "autotrain/tokenizer.h"

#include <cctype>
#include <filesystem>

#include <unicode/utf8.h>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "tokenizer_parts.h"

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  if (!fs::is_directory(model_dir))
    throw Error(model_dir + ": not a folder; give the model folder that holds tokenizer.json or tokenizer.model");
  tokenization::TokenizerConfig config = tokenization::read_tokenizer_config(model_dir);
  std::string model = (fs::path(model_dir) / "tokenizer.model").string();
  std::string json_file = (fs::path(model_dir) / "tokenizer.json").string();
  // tokenizer.model first: for Llama-2 / Mistral folders that carry both, transformers 5 builds its
  // LlamaTokenizer from the sentencepiece model too.
  if (fs::exists(model)) return tokenization::load_sentencepiece_tokenizer(model, config);
  if (fs::exists(json_file)) return tokenization::load_bpe_tokenizer(json_file, config);
  throw Error(model_dir + ": no tokenizer.model or tokenizer.json; copy the tokenizer files of the base model "
              "into this folder");
}

namespace tokenization {
namespace {

// A special token in tokenizer_config.json is a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return std::nullopt;
}

std::optional<bool> optional_bool(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

void read_special_tokens(const json& object, TokenizerConfig& config) {
  struct Slot {
    const char* key;
    std::optional<std::string>* value;
  } slots[] = {{"bos_token", &config.bos_token}, {"eos_token", &config.eos_token},
               {"pad_token", &config.pad_token}, {"unk_token", &config.unk_token}};
  for (auto& slot : slots) {
    auto it = object.find(slot.key);
    if (it != object.end() && !slot.value->has_value()) *slot.value = token_text(*it);
  }
  for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
    auto it = object.find(key);
    if (it == object.end() || !it->is_array()) continue;
    for (const auto& item : *it)
      if (auto text = token_text(item)) config.additional_special_tokens.push_back(*text);
  }
}

}  // namespace

json read_json_file(const std::string& path) { return parse_json_file(path, "copy it again from the base model"); }

TokenizerConfig read_tokenizer_config(const std::string& model_dir) {
  TokenizerConfig config;
  std::string path = (fs::path(model_dir) / "tokenizer_config.json").string();
  if (fs::exists(path)) {
    config.path = path;
    json object = read_json_file(path);
    if (!object.is_object()) throw Error(path + ": expected a JSON object");
    read_special_tokens(object, config);
    config.add_bos_token = optional_bool(object, "add_bos_token");
    config.add_eos_token = optional_bool(object, "add_eos_token");
    config.legacy = optional_bool(object, "legacy");
    config.add_prefix_space = optional_bool(object, "add_prefix_space");
    config.clean_up_tokenization_spaces = optional_bool(object, "clean_up_tokenization_spaces");
    if (auto it = object.find("tokenizer_class"); it != object.end() && it->is_string())
      config.tokenizer_class = it->get<std::string>();
    if (auto it = object.find("chat_template"); it != object.end()) config.chat_template = *it;
    auto decoder = object.find("added_tokens_decoder");
    if (decoder != object.end() && decoder->is_object()) {
      for (const auto& [key, value] : decoder->items()) {
        AddedToken token;
        auto content = token_text(value);
        if (!content) throw Error(path + ": added_tokens_decoder[\"" + key + "\"] has no \"content\"");
        token.content = *content;
        try {
          token.id = std::stoll(key);
        } catch (const std::exception&) {
          throw Error(path + ": added_tokens_decoder key \"" + key + "\" is not a token id");
        }
        token.special = value.value("special", false);
        token.lstrip = value.value("lstrip", false);
        token.rstrip = value.value("rstrip", false);
        token.single_word = value.value("single_word", false);
        token.normalized = value.value("normalized", !token.special);
        config.added_tokens_decoder.push_back(token);
      }
    }
  }
  std::string map_path = (fs::path(model_dir) / "special_tokens_map.json").string();
  if (fs::exists(map_path)) {
    json object = read_json_file(map_path);
    if (object.is_object()) read_special_tokens(object, config);
  }
  return config;
}

void require_utf8(std::string_view text) {
  if (!is_valid_utf8(std::string(text)))
    throw Error("tokenizer: the text is not valid UTF-8; re-encode the data as UTF-8 before tokenizing");
}

void append_utf8(std::string& out, uint32_t c) {
  char buffer[4];
  int32_t length = 0;
  UBool error = false;
  U8_APPEND(reinterpret_cast<uint8_t*>(buffer), length, 4, c, error);
  if (error) {
    out += "\xEF\xBF\xBD";
    return;
  }
  out.append(buffer, static_cast<size_t>(length));
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to, int64_t max_count) {
  if (from.empty()) return std::string(text);
  std::string out;
  size_t position = 0;
  for (int64_t done = 0; max_count < 0 || done < max_count; ++done) {
    const size_t hit = text.find(from, position);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(position, hit - position));
    out.append(to);
    position = hit + from.size();
  }
  out.append(text.substr(position));
  return out;
}

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kReplacements[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kReplacements) text = replace_all(text, from, to);  // as Python's chained replace
  return text;
}

std::optional<uint8_t> byte_token_value(std::string_view token) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>' || !hex(token[3]) || !hex(token[4]))
    return std::nullopt;
  return static_cast<uint8_t>(std::stoi(std::string(token.substr(3, 2)), nullptr, 16));
}

std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  size_t count = 0;
  auto flush = [&] {
    if (count == 0) return;
    if (utf8_lossy(bytes) == bytes) out.push_back(bytes);
    else for (size_t k = 0; k < count; ++k) out.push_back("\xEF\xBF\xBD");
    bytes.clear();
    count = 0;
  };
  for (std::string& token : tokens) {
    if (const auto byte = byte_token_value(token)) {
      bytes += static_cast<char>(*byte);
      ++count;
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

std::string utf8_lossy(std::string_view bytes) {
  // ICU's U8_NEXT skips exactly one maximal subpart of an ill-formed sequence (ICU >= 60), which is the
  // replacement rule of Rust's from_utf8_lossy.
  std::string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  int32_t length = static_cast<int32_t>(bytes.size()), i = 0;
  while (i < length) {
    int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, length, c);
    if (c < 0)
      out += "\xEF\xBF\xBD";
    else
      out.append(bytes.data() + start, static_cast<size_t>(i - start));
  }
  return out;
}

}  // namespace tokenization
}  // namespace autotrain
