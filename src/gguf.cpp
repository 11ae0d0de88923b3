#include "autotrain/gguf.h"

#include <ATen/ATen.h>
#include <c10/util/Half.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "autotrain/adapter.h"
#include "autotrain/chat_template.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/imatrix.h"
#include "autotrain/logging.h"
#include "autotrain/merge.h"
#include "autotrain/model_config.h"
#include "autotrain/progress.h"
#include "autotrain/safetensors.h"
#include "tokenizer_parts.h"

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

at::Tensor permute_for_llama_rope(const at::Tensor& weight, int64_t heads) {
  std::vector<int64_t> split = {heads, 2, weight.size(0) / heads / 2};
  for (int64_t i = 1; i < weight.dim(); ++i) split.push_back(weight.size(i));
  return weight.reshape(split).transpose(1, 2).reshape(weight.sizes());
}

namespace {

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
constexpr uint64_t kAlignment = 32;

// The GGUF side of each supported model_type: llama.cpp's architecture name and whether q/k rows are
// permuted (convert_hf_to_gguf.py registers MistralForCausalLM under LlamaModel; Qwen2Model and Qwen3Model keep
// HF order).
struct GgufArchitecture {
  const char* model_type;
  const char* name;
  bool permute_qk;
};
const GgufArchitecture kGgufArchitectures[] = {
    {"llama", "llama", true}, {"mistral", "llama", true}, {"qwen2", "qwen2", false}, {"qwen3", "qwen3", false}};

// HF tensor names (after model.layers.N.) and llama.cpp's (after blk.N.), gguf-py tensor_mapping.py.
const std::map<std::string, std::string> kLayerTensorNames = {
    {"input_layernorm", "attn_norm"},  {"post_attention_layernorm", "ffn_norm"}, {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},    {"self_attn.v_proj", "attn_v"},           {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},     {"mlp.up_proj", "ffn_up"},                {"mlp.down_proj", "ffn_down"},
    {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"}};

// Byte-level BPE pre-tokenizer regexes and the tokenizer.ggml.pre name llama.cpp gives them
// (convert_hf_to_gguf.py get_vocab_base_pre identifies them by a hash of their output; we by the regex).
const std::map<std::string, std::string> kPreTokenizers = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    // Mistral's tekken (Mistral Nemo, Mistral Small 3): Split on this, then ByteLevel without its regex.
    {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|)"
     R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|)"
     R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "tekken"}};

// GGUF metadata, serialized as it is added.
class GgufMetadata {
 public:
  enum ValueType : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };

  void u32(const std::string& key, uint64_t value) { header(key, kU32), raw(uint32_t(value)); }
  void f32(const std::string& key, double value) { header(key, kF32), raw(float(value)); }
  void boolean(const std::string& key, bool value) { header(key, kBool), raw(uint8_t(value)); }
  void string(const std::string& key, const std::string& value) { header(key, kString), text(value); }
  void strings(const std::string& key, const std::vector<std::string>& values) {
    array_header(key, kString, values.size());
    for (const auto& value : values) text(value);
  }
  void f32s(const std::string& key, const std::vector<float>& values) {
    array_header(key, kF32, values.size());
    for (float value : values) raw(value);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& values) {
    array_header(key, kI32, values.size());
    for (int32_t value : values) raw(value);
  }
  int64_t count() const { return count_; }
  const std::string& bytes() const { return bytes_; }

 private:
  template <typename T>
  void raw(T value) { bytes_.append(reinterpret_cast<const char*>(&value), sizeof value); }
  void text(const std::string& value) { raw(uint64_t(value.size())), bytes_.append(value); }
  void header(const std::string& key, ValueType type) { text(key), raw(uint32_t(type)), ++count_; }
  void array_header(const std::string& key, ValueType type, uint64_t size) {
    header(key, kArray), raw(uint32_t(type)), raw(size);
  }

  std::string bytes_;
  int64_t count_ = 0;
};

struct Vocabulary {
  std::string model;  // "llama" (sentencepiece) or "gpt2" (byte-level BPE)
  std::string pre;    // gpt2 only
  std::vector<std::string> tokens, merges;
  std::vector<float> scores;  // llama only
  std::vector<int32_t> types;
  std::optional<int64_t> unk_id;
};

// convert_hf_to_gguf.py pads the vocabulary to the embedding rows with "[PAD{i}]" tokens of type UNUSED.
void pad_vocabulary(Vocabulary& vocab, int64_t rows, const std::string& source) {
  if (int64_t(vocab.tokens.size()) > rows)
    throw Error(source + ": the tokenizer has " + std::to_string(vocab.tokens.size()) + " tokens but the embedding only " +
                std::to_string(rows) + " rows; resize the model's embeddings to the tokenizer first");
  for (int64_t i = int64_t(vocab.tokens.size()); i < rows; ++i) {
    vocab.tokens.push_back("[PAD" + std::to_string(i) + "]");
    vocab.types.push_back(kUnused);
    if (vocab.model == "llama") vocab.scores.push_back(-10000.0f);
  }
}

// Added tokens of tokenizer_config.json: special ones are CONTROL, others USER_DEFINED.
void apply_added_tokens(Vocabulary& vocab, const std::vector<tokenization::AddedToken>& added) {
  for (const auto& token : added) {
    if (token.id < 0) continue;
    if (token.id >= int64_t(vocab.tokens.size())) {
      vocab.tokens.resize(token.id + 1, "");
      vocab.types.resize(token.id + 1, kUnused);
      if (vocab.model == "llama") vocab.scores.resize(token.id + 1, -10000.0f);
    }
    vocab.tokens[token.id] = token.content;
    vocab.types[token.id] = token.special ? kControl : kUserDefined;
  }
}

Vocabulary sentencepiece_vocabulary(const std::string& path, const tokenization::TokenizerConfig& config) {
  sentencepiece::SentencePieceProcessor processor;
  auto status = processor.Load(path);
  if (!status.ok()) throw Error(path + ": cannot load the sentencepiece model (" + status.ToString() + ")");
  Vocabulary vocab;
  vocab.model = "llama";
  for (int id = 0; id < processor.GetPieceSize(); ++id) {
    vocab.tokens.push_back(processor.IdToPiece(id));
    vocab.scores.push_back(processor.GetScore(id));
    vocab.types.push_back(processor.IsUnknown(id) ? kUnknown
                          : processor.IsControl(id) ? kControl
                          : processor.IsUnused(id)  ? kUnused
                          : processor.IsByte(id)    ? kByte
                                                    : kNormal);
  }
  if (processor.unk_id() >= 0) vocab.unk_id = processor.unk_id();
  apply_added_tokens(vocab, config.added_tokens_decoder);
  return vocab;
}

std::string pre_tokenizer_name(const json& pre_tokenizer, const std::string& path) {
  std::vector<const json*> parts = {&pre_tokenizer};
  if (pre_tokenizer.contains("pretokenizers")) {
    for (const auto& part : pre_tokenizer["pretokenizers"]) parts.push_back(&part);
  }
  for (const json* part : parts) {
    if (part->value("type", "") == "Split" && part->contains("pattern") && (*part)["pattern"].contains("Regex")) {
      auto known = kPreTokenizers.find((*part)["pattern"]["Regex"].get<std::string>());
      if (known != kPreTokenizers.end()) return known->second;
    }
  }
  // No Split: GPT-2's byte-level regex alone ("gpt-2"), or after digits split one by one (SmolLM's, "smollm").
  auto is = [](const json& part, const char* type) { return part.is_object() && part.value("type", "") == type; };
  auto gpt2_regex = [&](const json& part) {
    return is(part, "ByteLevel") && part.value("use_regex", true) && !part.value("add_prefix_space", true);
  };
  if (gpt2_regex(pre_tokenizer)) return "gpt-2";
  const json steps = pre_tokenizer.value("pretokenizers", json::array());
  if (is(pre_tokenizer, "Sequence") && steps.size() == 2 && is(steps[0], "Digits") &&
      steps[0].value("individual_digits", false) && gpt2_regex(steps[1]))
    return "smollm";
  log::warn(path + ": pre-tokenizer not recognised; writing tokenizer.ggml.pre \"default\" (llama.cpp may split "
            "text differently from transformers)");
  return "default";
}

// Whether a tokenizer.json pre_tokenizer has a ByteLevel step (byte-level BPE).
bool has_byte_level(const json& pre_tokenizer) {
  if (!pre_tokenizer.is_object()) return false;
  if (pre_tokenizer.value("type", "") == "ByteLevel") return true;
  for (const auto& step : pre_tokenizer.value("pretokenizers", json::array()))
    if (has_byte_level(step)) return true;
  return false;
}

// A sentencepiece-style tokenizer.json (BPE with byte fallback, no ByteLevel pre-tokenizer: a Llama-2 / Mistral
// folder without tokenizer.model), as convert_hf_to_gguf.py's _set_vocab_llama_hf writes it (gguf-py LlamaHfVocab):
// model "llama", pre "default", every score -1000, <0xXX> tokens BYTE, the named special tokens CONTROL, tokens added
// beyond the vocabulary USER_DEFINED. (llama.cpp's sentencepiece tokenizer merges by score, so such a file
// tokenizes worse in llama.cpp than one converted from tokenizer.model; that is the converter's choice.)
Vocabulary llama_hf_vocabulary(const json& document, const std::string& path,
                               const tokenization::TokenizerConfig& config) {
  Vocabulary vocab;
  vocab.model = "llama";
  vocab.pre = "default";
  const json& model = document.at("model");
  std::map<std::string, int64_t> ids;
  const json vocab_json = model.value("vocab", json::object());  // a named copy: items() of a temporary dangles
  for (const auto& [token, id] : vocab_json.items()) ids[token] = id.get<int64_t>();
  const int64_t base = int64_t(ids.size());
  for (const auto& token : document.value("added_tokens", json::array())) {
    const int64_t id = token.value("id", int64_t(-1));
    if (id >= base) ids[token.value("content", "")] = id;
  }
  std::set<int64_t> special;
  std::vector<std::string> named = config.additional_special_tokens;
  for (const auto* token : {&config.bos_token, &config.eos_token, &config.unk_token, &config.pad_token})
    if (*token) named.push_back(**token);
  for (const std::string& name : named)
    if (auto it = ids.find(name); it != ids.end()) special.insert(it->second);
  for (const auto& [token, id] : ids) {
    if (id >= int64_t(vocab.tokens.size())) vocab.tokens.resize(id + 1), vocab.types.resize(id + 1, kUnused);
    vocab.tokens[id] = token;
    const bool byte = tokenization::byte_token_value(token).has_value();
    vocab.types[id] = byte ? kByte : special.count(id) ? kControl : id >= base ? kUserDefined : kNormal;
  }
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    if (vocab.tokens[i].empty()) throw Error(path + ": no token has id " + std::to_string(i));
  }
  vocab.scores.assign(vocab.tokens.size(), -1000.0f);
  return vocab;
}

Vocabulary bpe_vocabulary(const std::string& path, const tokenization::TokenizerConfig& config) {
  const json document = tokenization::read_json_file(path);
  const json& model = document.value("model", json::object());
  if (model.value("type", "") != "BPE") throw Error(path + ": model.type is not BPE; only byte-level BPE exports as gpt2");
  if (model.value("byte_fallback", false) && !has_byte_level(document.value("pre_tokenizer", json())))
    return llama_hf_vocabulary(document, path, config);
  Vocabulary vocab;
  vocab.model = "gpt2";
  const json vocab_json = model.value("vocab", json::object());
  for (const auto& [token, id] : vocab_json.items()) {
    const int64_t value = id.get<int64_t>();
    if (value >= int64_t(vocab.tokens.size())) vocab.tokens.resize(value + 1), vocab.types.resize(value + 1, kUnused);
    vocab.tokens[value] = token;
    vocab.types[value] = kNormal;
  }
  std::vector<tokenization::AddedToken> added;
  for (const auto& token : document.value("added_tokens", json::array())) {
    tokenization::AddedToken entry;
    entry.id = token.value("id", int64_t(-1));
    entry.content = token.value("content", "");
    entry.special = token.value("special", false);
    added.push_back(entry);
  }
  apply_added_tokens(vocab, added);
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    if (vocab.tokens[i].empty()) vocab.tokens[i] = "[PAD" + std::to_string(i) + "]";
  }
  for (const auto& merge : model.value("merges", json::array())) {  // "a b" or ["a", "b"]
    vocab.merges.push_back(merge.is_string() ? merge.get<std::string>()
                                             : merge.at(0).get<std::string>() + " " + merge.at(1).get<std::string>());
  }
  vocab.pre = pre_tokenizer_name(document.value("pre_tokenizer", json::object()), path);
  return vocab;
}

// The model's chat template, as gguf-py's SpecialVocab / GGUFWriter.add_chat_template write it (llama-server and
// ollama format conversations with it): a string as tokenizer.chat_template; named templates as the "default" one
// there, each other as tokenizer.chat_template.<name> (letters and digits, others as _) listed in
// tokenizer.chat_templates. Nothing for a folder without one.
void add_chat_template_metadata(GgufMetadata& metadata, const std::string& model_dir) {
  std::string origin;
  const json value = chat_template_value(model_dir, &origin);
  if (value.is_string()) return metadata.string("tokenizer.chat_template", value.get<std::string>());
  if (!value.is_array()) {
    if (!value.is_null()) log::warn(origin + ": chat_template is neither a string nor a list; not written");
    return;
  }
  std::optional<std::string> default_template;
  std::vector<std::string> names;
  for (const json& choice : value) {
    if (!choice.is_object() || !choice.contains("template") || !choice["template"].is_string()) continue;
    std::string name = choice.value("name", "");
    for (char& c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    if (name.empty()) continue;
    if (name == "default") {
      default_template = choice["template"].get<std::string>();
    } else {
      names.push_back(name);
      metadata.string("tokenizer.chat_template." + name, choice["template"].get<std::string>());
    }
  }
  if (!names.empty()) metadata.strings("tokenizer.chat_templates", names);
  if (default_template) metadata.string("tokenizer.chat_template", *default_template);
}

void add_tokenizer_metadata(GgufMetadata& metadata, const std::string& model_dir, const ModelConfig& config) {
  const auto tokenizer_config = tokenization::read_tokenizer_config(model_dir);
  const fs::path dir(model_dir);
  Vocabulary vocab;
  std::error_code ec;
  if (fs::exists(dir / "tokenizer.model", ec)) {
    vocab = sentencepiece_vocabulary((dir / "tokenizer.model").string(), tokenizer_config);
  } else if (fs::exists(dir / "tokenizer.json", ec)) {
    vocab = bpe_vocabulary((dir / "tokenizer.json").string(), tokenizer_config);
  } else {
    throw Error(model_dir + ": no tokenizer.model or tokenizer.json; GGUF files carry the vocabulary, so copy the "
                "tokenizer files of the base model into this folder");
  }
  pad_vocabulary(vocab, config.vocab_size, model_dir);
  metadata.string("tokenizer.ggml.model", vocab.model);
  if (!vocab.pre.empty()) metadata.string("tokenizer.ggml.pre", vocab.pre);
  metadata.strings("tokenizer.ggml.tokens", vocab.tokens);
  if (!vocab.scores.empty()) metadata.f32s("tokenizer.ggml.scores", vocab.scores);
  metadata.i32s("tokenizer.ggml.token_type", vocab.types);
  if (!vocab.merges.empty()) metadata.strings("tokenizer.ggml.merges", vocab.merges);

  const auto tokenizer = Tokenizer::load(model_dir);
  const auto bos = tokenizer->bos_id() ? tokenizer->bos_id() : config.bos_token_id;
  const auto eos = tokenizer->eos_id() ? tokenizer->eos_id()
                   : config.eos_token_ids.empty() ? std::nullopt
                                                  : std::optional<int64_t>(config.eos_token_ids[0]);
  const auto pad = tokenizer->pad_id() ? tokenizer->pad_id() : config.pad_token_id;
  if (bos) metadata.u32("tokenizer.ggml.bos_token_id", *bos);
  if (eos) metadata.u32("tokenizer.ggml.eos_token_id", *eos);
  if (vocab.unk_id) metadata.u32("tokenizer.ggml.unknown_token_id", *vocab.unk_id);
  if (pad) metadata.u32("tokenizer.ggml.padding_token_id", *pad);
  add_chat_template_metadata(metadata, model_dir);
  const std::vector<int64_t> empty = tokenizer->encode("", true);
  metadata.boolean("tokenizer.ggml.add_bos_token", bos && !empty.empty() && empty.front() == *bos);
  metadata.boolean("tokenizer.ggml.add_eos_token", eos && !empty.empty() && empty.back() == *eos);
}

// llama.cpp's llama3 rope: no metadata key, but a rope_freqs tensor of per-frequency divisors
// (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors), applied to the plain theta frequencies.
at::Tensor llama3_rope_factors(const ModelConfig& config) {
  const RopeParameters& rope = config.rope;
  const double low_wavelength = rope.original_max_position_embeddings / rope.low_freq_factor;
  const double high_wavelength = rope.original_max_position_embeddings / rope.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < config.head_dim; i += 2) {
    const float frequency = 1.0f / std::pow(float(rope.theta), float(i) / float(config.head_dim));
    const double wavelength = 2 * M_PI / frequency;
    if (wavelength < high_wavelength) {
      factors.push_back(1.0f);
    } else if (wavelength > low_wavelength) {
      factors.push_back(float(rope.factor));
    } else {
      const double smooth = (rope.original_max_position_embeddings / wavelength - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      factors.push_back(float(1.0 / ((1 - smooth) / rope.factor + smooth)));
    }
  }
  return at::tensor(factors, at::kFloat);
}

void add_model_metadata(GgufMetadata& metadata, const std::string& arch, const std::string& name,
                        const ModelConfig& config, GgufType type) {
  metadata.string("general.architecture", arch);
  metadata.string("general.type", "model");
  metadata.string("general.name", name);
  metadata.u32(arch + ".vocab_size", config.vocab_size);
  metadata.u32(arch + ".context_length", config.max_position_embeddings);
  metadata.u32(arch + ".embedding_length", config.hidden_size);
  metadata.u32(arch + ".block_count", config.num_hidden_layers);
  metadata.u32(arch + ".feed_forward_length", config.intermediate_size);
  metadata.u32(arch + ".attention.head_count", config.num_attention_heads);
  metadata.u32(arch + ".attention.head_count_kv", config.num_key_value_heads);
  metadata.u32(arch + ".attention.key_length", config.head_dim);
  metadata.u32(arch + ".attention.value_length", config.head_dim);
  metadata.u32(arch + ".rope.dimension_count", config.head_dim);
  metadata.f32(arch + ".attention.layer_norm_rms_epsilon", config.rms_norm_eps);
  metadata.f32(arch + ".rope.freq_base", config.rope.theta);
  if (config.rope.type == RopeType::linear) {
    metadata.string(arch + ".rope.scaling.type", "linear");
    metadata.f32(arch + ".rope.scaling.factor", config.rope.factor);
  }
  metadata.u32("general.file_type", gguf_llama_ftype(type));
  metadata.u32("general.quantization_version", 2);                   // GGML_QNT_VERSION
  metadata.u32("general.alignment", kAlignment);
}

// One tensor of the output: where it comes from, how it is stored.
struct GgufTensor {
  std::string name, source;  // source: the checkpoint name; empty for rope_freqs
  std::optional<int64_t> permute_heads;
  std::vector<int64_t> shape;  // torch order (outermost first)
  GgmlType type = GgmlType::f32;
  uint64_t bytes = 0, offset = 0;
  const std::vector<float>* importance = nullptr;  // its importance-matrix entry, one value a column, if any
};

// The tensor's importance-matrix entry as a float32 tensor over its values (undefined without one).
at::Tensor importance_of(const GgufTensor& tensor) {
  if (!tensor.importance) return {};
  return at::from_blob(const_cast<float*>(tensor.importance->data()), {int64_t(tensor.importance->size())}, at::kFloat);
}

uint64_t padded(uint64_t size) { return (size + kAlignment - 1) / kAlignment * kAlignment; }

std::string gguf_name_of(const std::string& source, const ModelConfig& config, std::optional<int64_t>* permute_heads,
                         bool permute_qk) {
  const Architecture& arch = *config.architecture;
  if (source == arch.embed_tokens) return "token_embd.weight";
  if (source == arch.final_norm) return "output_norm.weight";
  if (source == arch.lm_head) return "output.weight";
  const std::string prefix = arch.layer_prefix.substr(0, arch.layer_prefix.find("{}"));
  if (source.rfind(prefix, 0) == 0) {
    const size_t dot = source.find('.', prefix.size());
    const std::string layer = source.substr(prefix.size(), dot - prefix.size());
    const std::string rest = source.substr(dot + 1);
    const size_t last = rest.rfind('.');
    auto mapped = kLayerTensorNames.find(rest.substr(0, last));
    if (mapped != kLayerTensorNames.end()) {
      if (permute_qk && mapped->second == "attn_q") *permute_heads = config.num_attention_heads;
      if (permute_qk && mapped->second == "attn_k") *permute_heads = config.num_key_value_heads;
      return "blk." + layer + "." + mapped->second + rest.substr(last);
    }
  }
  return "";
}

// The architecture row of a causal LM's config, or an Error naming the folder.
const GgufArchitecture& gguf_architecture(const ModelConfig& config, const std::string& model_dir) {
  if (config.sequence_classification)
    throw Error(model_dir + "/config.json: a sequence-classification model (e.g. a merged reward model); "
                "llama.cpp runs causal language models, so there is no GGUF to write for it");
  for (const auto& row : kGgufArchitectures) {
    if (config.model_type == row.model_type) return row;
  }
  throw Error(model_dir + "/config.json: model_type " + config.model_type + " has no GGUF export");
}

// Writes the GGUF file: header, metadata, tensor infos, then each tensor's data as `values` gives it (float, in
// torch order, before the permutation), converted to its type one at a time; `written` (if any) is told after each.
GgufSummary write_gguf(const std::string& out_file, const std::string& architecture, const GgufMetadata& metadata,
                       std::vector<GgufTensor>& tensors, const std::function<at::Tensor(const GgufTensor&)>& values,
                       const std::function<void(const GgufTensor&)>& written = nullptr,
                       const char* progress_label = "export-gguf") {
  std::string header("GGUF", 4);
  auto raw = [&header](auto value) { header.append(reinterpret_cast<const char*>(&value), sizeof value); };
  raw(uint32_t(3));
  raw(uint64_t(tensors.size()));
  raw(uint64_t(metadata.count()));
  header += metadata.bytes();
  uint64_t offset = 0;
  GgufSummary summary;
  for (GgufTensor& tensor : tensors) {
    int64_t numel = 1;
    for (int64_t d : tensor.shape) numel *= d;
    tensor.bytes = ggml_bytes(tensor.type, numel);
    tensor.offset = offset;
    offset += padded(tensor.bytes);
    raw(uint64_t(tensor.name.size()));
    header += tensor.name;
    raw(uint32_t(tensor.shape.size()));
    for (auto d = tensor.shape.rbegin(); d != tensor.shape.rend(); ++d) raw(uint64_t(*d));  // innermost first
    raw(uint32_t(tensor.type));
    raw(tensor.offset);
    ++summary.tensor_types[ggml_type_info(tensor.type).name];
  }
  header.append(padded(header.size()) - header.size(), '\0');

  AtomicFileWriter out(out_file);
  out.write(header);
  const std::string zeros(kAlignment, '\0');
  ProgressBar progress(progress_label, int64_t(tensors.size()), "tensor");
  for (const GgufTensor& tensor : tensors) {
    at::Tensor data = values(tensor).to(at::kFloat);
    if (tensor.permute_heads) data = permute_for_llama_rope(data, *tensor.permute_heads);
    const at::Tensor bytes = ggml_quantize(data, tensor.type, importance_of(tensor));
    if (uint64_t(bytes.numel()) != tensor.bytes) throw Error(tensor.name + ": unexpected byte count (a bug)");
    out.write(bytes.data_ptr(), tensor.bytes);
    out.write(zeros.data(), padded(tensor.bytes) - tensor.bytes);
    if (written) written(tensor);
    progress.advance();
  }
  progress.finish();
  out.commit();
  summary.architecture = architecture;
  summary.tensors = int64_t(tensors.size());
  summary.metadata_entries = metadata.count();
  summary.file_bytes = header.size() + offset;
  return summary;
}

std::string general_name(const GgufOptions& options, const std::string& folder) {
  return options.name.empty() ? fs::path(folder).lexically_normal().filename().string() : options.name;
}

// An adapter of the model, checked against it as merge-adapter checks (a reward model's adapter refused: llama.cpp
// runs causal language models): every adapted weight's LoRA pair.
struct AdapterPlan {
  AdapterConfig config;
  std::shared_ptr<SafetensorsFile> file;
  std::map<std::string, LoraPair> pairs;  // by the base weight's checkpoint name
};

AdapterPlan plan_adapter(const std::string& adapter_dir, const ModelConfig& config, const Checkpoint& base) {
  AdapterPlan plan;
  plan.config = load_adapter_config(adapter_dir);
  const std::string adapter_config_path = adapter_dir + "/adapter_config.json";
  if (plan.config.is_reward_model())
    throw Error(adapter_config_path + ": a reward model's adapter (task_type SEQ_CLS, with its score head); "
                "llama.cpp runs causal language models");
  check_adapter_base(plan.config, adapter_config_path, config);
  plan.file = SafetensorsFile::open(adapter_dir + "/adapter_model.safetensors");
  plan.pairs = plan_adapter_pairs(*plan.file, plan.config, config, base);
  return plan;
}

// A PEFT LoRA adapter as llama.cpp's LoRA GGUF (convert_lora_to_gguf.py): general.type "adapter", adapter.type
// "lora", adapter.lora.alpha, and for each adapted weight W its "<W's GGUF name>.lora_a" (r, in) and ".lora_b"
// (out, r), lora_b's rows permuted as W's for llama's q/k. llama.cpp scales B A by alpha / r, so an rsLoRA
// adapter (alpha / sqrt(r)) is written with alpha * sqrt(r).
GgufSummary export_gguf_adapter(const GgufOptions& options) {
  const ModelConfig config = load_model_config(options.model_dir);
  const GgufArchitecture& arch = gguf_architecture(config, options.model_dir);
  if (is_llama_quantize_preset(options.type))
    throw Error("--type " + gguf_type_name(options.type) + ": an adapter is written as f32, f16, bf16 or q8_0 (as "
                "convert_lora_to_gguf.py writes it); llama-quantize's presets are for whole models (--merge)");
  const Checkpoint base = Checkpoint::open(options.model_dir);
  const AdapterPlan plan = plan_adapter(options.adapter_dir, config, base);
  const AdapterConfig& adapter = plan.config;
  const auto& adapter_file = plan.file;
  const std::map<std::string, LoraPair>& pairs = plan.pairs;

  std::vector<GgufTensor> tensors;
  GgufMixture mixture;  // the converter's rule: the type asked where rows are whole blocks, else f16
  mixture.type = options.type;
  for (const auto& [weight, pair] : pairs) {
    std::optional<int64_t> permute_heads;
    const std::string name = gguf_name_of(weight, config, &permute_heads, arch.permute_qk);
    for (const bool is_a : {true, false}) {
      GgufTensor tensor;
      tensor.name = name + (is_a ? ".lora_a" : ".lora_b");
      tensor.source = is_a ? pair.a : pair.b;
      if (!is_a) tensor.permute_heads = permute_heads;  // B's rows are W's rows; A's columns its inputs
      tensor.shape = adapter_file->info(tensor.source).shape;
      tensor.type = gguf_weight_type(mixture, tensor.name, tensor.shape.back());
      tensors.push_back(tensor);
    }
  }
  const double alpha =
      adapter.lora.rslora ? adapter.lora.alpha * std::sqrt(double(adapter.lora.r)) : adapter.lora.alpha;
  GgufMetadata metadata;
  metadata.string("general.architecture", arch.name);
  metadata.string("general.type", "adapter");
  metadata.string("general.name", general_name(options, options.adapter_dir));
  metadata.string("adapter.type", "lora");
  metadata.f32("adapter.lora.alpha", alpha);
  metadata.u32("general.file_type", gguf_llama_ftype(options.type));
  metadata.u32("general.quantization_version", 2);
  metadata.u32("general.alignment", kAlignment);
  return write_gguf(options.out_file, arch.name, metadata, tensors,
                    [&](const GgufTensor& tensor) { return adapter_file->tensor(tensor.source); });
}

// The tensors of a model's GGUF file, in the checkpoint's order (rope_freqs first for llama3 rope), their types set
// as the mixture's type and overrides give them: the converter's or llama-quantize's choice for each 2-D weight, f32
// for the rest (model_tensors fills in the rest of the mixture). sources: the checkpoint's (name, shape) in its
// order; where(name): the file it is in, for messages.
std::vector<GgufTensor> model_tensors(const ModelConfig& config, const GgufArchitecture& arch,
                                      const TensorShapes& sources,
                                      const std::function<std::string(const std::string&)>& where, GgufMixture mixture) {
  std::vector<GgufTensor> tensors;
  if (arch.permute_qk && config.rope.type == RopeType::llama3)
    tensors.push_back({"rope_freqs.weight", "", std::nullopt, {config.head_dim / 2}, GgmlType::f32});
  for (const auto& [source, shape] : sources) {
    if (source.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed by llama.cpp
    if (source == config.architecture->lm_head && config.tie_word_embeddings) continue;
    GgufTensor tensor;
    tensor.source = source;
    tensor.name = gguf_name_of(source, config, &tensor.permute_heads, arch.permute_qk);
    if (tensor.name.empty())
      throw Error(where(source) + ": tensor " + source + " has no llama.cpp counterpart; is this a plain " +
                  config.model_type + " checkpoint?");
    tensor.shape = shape;
    tensors.push_back(tensor);
  }
  mixture.layers = config.num_hidden_layers;
  mixture.tied_embeddings = std::none_of(tensors.begin(), tensors.end(), [](const GgufTensor& t) {
    return t.name == "output.weight";
  });
  // llama.cpp's LLM_TYPE_70B: a llama with 80 layers and grouped kv heads (else 65B), any qwen2 of 80.
  const std::string arch_name = arch.name;
  mixture.seventy_b = config.num_hidden_layers == 80 &&
                      ((arch_name == "llama" && config.num_attention_heads != config.num_key_value_heads) ||
                       arch_name == "qwen2");
  mixture.gqa = config.num_key_value_heads > 0 ? config.num_attention_heads / config.num_key_value_heads : 0;
  for (const GgufTensor& tensor : tensors) {
    if (tensor.shape.size() >= 2) mixture.names.push_back(tensor.name);
  }
  for (GgufTensor& tensor : tensors) {
    if (tensor.shape.size() >= 2) tensor.type = gguf_weight_type(mixture, tensor.name, tensor.shape.back());
  }
  return tensors;
}

std::vector<GgufTensor> model_tensors(const ModelConfig& config, const GgufArchitecture& arch,
                                      const Checkpoint& checkpoint, const GgufMixture& seed) {
  TensorShapes sources;
  for (const std::string& name : checkpoint.names()) sources.emplace_back(name, checkpoint.info(name).shape);
  return model_tensors(config, arch, sources, [&](const std::string& name) { return checkpoint.path_of(name); },
                       seed);
}

// llama-quantize's overrides and importance matrix need one of its presets, as it takes them; q2_K_S needs the matrix.
void check_overrides(const GgufOptions& options) {
  const bool overrides = options.output_type || options.token_embedding_type || options.pure;
  if (overrides && !is_llama_quantize_preset(options.type))
    throw config_error("--output-tensor-type, --token-embedding-type and --pure go with a llama-quantize preset "
                       "(q4_0 ... q6_K), as llama-quantize takes them; --type " + gguf_type_name(options.type) +
                       " is the converter's");
  if (!options.imatrix_file.empty() && !is_llama_quantize_preset(options.type))
    throw config_error("--imatrix goes with a llama-quantize preset (q4_0 ... q6_K), as llama-quantize takes it; "
                       "--type " + gguf_type_name(options.type) + " is the converter's, which has no use for one");
  if (options.type == GgufType::q2_K_S && options.imatrix_file.empty())
    throw config_error("--type q2_K_S needs an importance matrix (--imatrix FILE, from llama-imatrix or autotrain "
                       "imatrix), as llama-quantize does: without one its 2-bit weights are garbage");
}

// The type and llama-quantize's overrides of `options`, the rest of the mixture for model_tensors to fill in.
GgufMixture mixture_seed(const GgufOptions& options) {
  check_overrides(options);
  GgufMixture seed;
  seed.type = options.type;
  seed.output_type = options.output_type;
  seed.token_embedding_type = options.token_embedding_type;
  seed.pure = options.pure;
  seed.has_imatrix = !options.imatrix_file.empty();
  return seed;
}

// Gives each weight that is quantized to a block type its entry of the importance matrix, as llama-quantize looks
// them up: by GGUF name; an entry of another length is an error (token_embd's is ignored, as llama-quantize does:
// llama-imatrix never sees it multiplied); a weight without one is quantized without (q2_K_S's q2_K weights, which
// need one, are an error).
void attach_importance(std::vector<GgufTensor>& tensors, const ImportanceMatrix& imatrix, GgufType preset) {
  int64_t without = 0;
  for (GgufTensor& tensor : tensors) {
    if (tensor.shape.size() < 2 || ggml_type_info(tensor.type).block_values == 1) continue;  // not quantized
    const auto found = imatrix.values.find(tensor.name);
    const int64_t columns = tensor.shape.back();
    if (found != imatrix.values.end() && int64_t(found->second.size()) == columns) {
      tensor.importance = &found->second;
      continue;
    }
    if (found != imatrix.values.end() && tensor.name != "token_embd.weight")
      throw Error(imatrix.path + ": the importance of " + tensor.name + " has " + std::to_string(found->second.size()) +
                  " values, the weight " + std::to_string(columns) + " columns: was it computed for another model?");
    const bool needed = preset == GgufType::q2_K_S && tensor.type == GgmlType::q2_K &&
                        tensor.name != "token_embd.weight" && tensor.name != "output.weight";
    if (needed)
      throw Error(imatrix.path + ": no importance for " + tensor.name + ", which q2_K_S quantizes to q2_K and needs "
                  "one for (llama-quantize refuses it too); compute the matrix on text that runs every layer");
    if (tensor.name == "token_embd.weight") continue;  // looked up, not multiplied: llama-imatrix never has it
    ++without;
    log::info("no importance for " + tensor.name + " in " + imatrix.path + ": quantized without one");
  }
  if (without > 0) log::warn(std::to_string(without) + " quantized weights have no importance in " + imatrix.path);
}

// llama-quantize's record of the matrix (its --override-kv entries, after the rest): strings cut at 127 bytes.
void add_imatrix_metadata(GgufMetadata& metadata, const std::string& file, const ImportanceMatrix& imatrix) {
  metadata.string("quantize.imatrix.file", file.substr(0, 127));
  if (!imatrix.datasets.empty()) metadata.string("quantize.imatrix.dataset", imatrix.datasets.front().substr(0, 127));
  metadata.u32("quantize.imatrix.entries_count", imatrix.values.size());
  if (imatrix.chunk_count > 0) metadata.u32("quantize.imatrix.chunks_count", uint64_t(imatrix.chunk_count));
}

}  // namespace

std::map<std::string, GgmlType> gguf_weight_types(const std::string& model_dir, const TensorShapes& sources,
                                                  const GgufOptions& options) {
  const ModelConfig config = load_model_config(model_dir);
  std::map<std::string, GgmlType> types;
  const auto where = [&](const std::string&) { return model_dir; };
  for (const GgufTensor& tensor :
       model_tensors(config, gguf_architecture(config, model_dir), sources, where, mixture_seed(options))) {
    if (tensor.shape.size() >= 2) types[tensor.name] = tensor.type;
  }
  return types;
}

std::function<at::Tensor(const std::string&, const at::Tensor&)> gguf_round_trip(const std::string& model_dir,
                                                                                  GgufType type,
                                                                                  const std::string& imatrix_file) {
  const ModelConfig config = load_model_config(model_dir);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  GgufOptions options;
  options.type = type;
  options.imatrix_file = imatrix_file;
  std::vector<GgufTensor> tensors =
      model_tensors(config, gguf_architecture(config, model_dir), checkpoint, mixture_seed(options));
  auto imatrix = std::make_shared<ImportanceMatrix>();
  if (!imatrix_file.empty()) {
    *imatrix = load_imatrix(imatrix_file);
    attach_importance(tensors, *imatrix, type);
  }
  struct Stored {
    GgmlType type;
    at::Tensor importance;
  };
  std::map<std::string, Stored> stored;  // checkpoint name -> its 2-D weight's type and importance
  for (const GgufTensor& tensor : tensors) {
    if (tensor.shape.size() >= 2) stored[tensor.source] = {tensor.type, importance_of(tensor)};
  }
  return [stored, imatrix](const std::string& name, const at::Tensor& tensor) {  // imatrix: keeps the values alive
    const auto found = stored.find(name);
    if (found == stored.end()) return tensor;
    const at::Tensor values = tensor.to(at::kFloat);
    const GgmlType type = found->second.type;
    return ggml_dequantize(ggml_quantize(values, type, found->second.importance), type, values.sizes());
  };
}

void write_gguf_f32(const std::string& path, const std::vector<GgufKeyValue>& metadata,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  GgufMetadata kv;
  for (const GgufKeyValue& entry : metadata) {
    if (const auto* number = std::get_if<uint32_t>(&entry.value)) kv.u32(entry.key, *number);
    if (const auto* text = std::get_if<std::string>(&entry.value)) kv.string(entry.key, *text);
    if (const auto* texts = std::get_if<std::vector<std::string>>(&entry.value)) kv.strings(entry.key, *texts);
  }
  std::vector<GgufTensor> infos;  // (general.alignment left out, as llama-imatrix does: its default, 32, is ours)
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [name, tensor] : tensors) {
    GgufTensor info;
    info.name = name;
    info.shape = tensor.sizes().vec();
    infos.push_back(info);
    by_name[name] = tensor;
  }
  write_gguf(path, "", kv, infos, [&](const GgufTensor& t) { return by_name.at(t.name); }, nullptr, "write");
}

GgufSummary export_gguf(const GgufOptions& options) {
  if (!options.adapter_dir.empty() && !options.merge_adapter) {
    check_overrides(options);  // an adapter's converter types take none of them
    return export_gguf_adapter(options);
  }
  const ModelConfig config = load_model_config(options.model_dir);
  const GgufArchitecture* arch = &gguf_architecture(config, options.model_dir);
  if (config.architecture->sliding_window_rule != SlidingWindowRule::none &&
      std::any_of(config.layer_sliding_window.begin(), config.layer_sliding_window.end(), [](int64_t w) { return w > 0; }))
    log::warn("the model uses a sliding attention window, which llama.cpp's " + std::string(arch->name) +
              " architecture ignores: outputs agree up to the window length only");
  const Checkpoint checkpoint = Checkpoint::open(options.model_dir);
  std::vector<GgufTensor> tensors = model_tensors(config, *arch, checkpoint, mixture_seed(options));
  ImportanceMatrix imatrix;
  if (!options.imatrix_file.empty()) {
    imatrix = load_imatrix(options.imatrix_file);
    attach_importance(tensors, imatrix, options.type);
  }
  // --merge: each adapted weight is merge-adapter's W + scaling B A in the base's dtype, so that the file is the
  // one export-gguf writes from merge-adapter's output, without that folder on disk.
  std::optional<AdapterPlan> adapter;
  if (options.merge_adapter) adapter = plan_adapter(options.adapter_dir, config, checkpoint);

  GgufMetadata metadata;
  const std::string name = general_name(options, adapter ? options.adapter_dir : options.model_dir);
  add_model_metadata(metadata, arch->name, name, config, options.type);
  add_tokenizer_metadata(metadata, options.model_dir, config);
  if (!options.imatrix_file.empty()) add_imatrix_metadata(metadata, options.imatrix_file, imatrix);
  return write_gguf(
      options.out_file, arch->name, metadata, tensors,
      [&](const GgufTensor& tensor) {
        if (tensor.source.empty()) return llama3_rope_factors(config);
        const at::Tensor weight = checkpoint.tensor(tensor.source);
        if (!adapter) return weight;
        const auto pair = adapter->pairs.find(tensor.source);
        if (pair == adapter->pairs.end()) return weight;
        return merge_lora_weight(weight, adapter->file->tensor(pair->second.a), adapter->file->tensor(pair->second.b),
                                 lora_scaling(adapter->config.lora), config.dtype);
      },
      [&](const GgufTensor& tensor) {
        if (!tensor.source.empty()) checkpoint.evict(tensor.source);
      });
}

}  // namespace autotrain
