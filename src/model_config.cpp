#include "autotrain/model_config.h"

#include <ATen/ATen.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/text_util.h"

namespace autotrain {

using json = nlohmann::json;

namespace {

// The architecture table. Sources: transformers 5 models/{llama,qwen2,qwen3,mistral}/{configuration,modeling}_*.py.
std::vector<Architecture> make_architectures() {
  Architecture llama;
  llama.model_type = "llama";
  llama.attention_bias_key = "attention_bias";
  llama.mlp_bias_key = "mlp_bias";
  llama.default_max_position_embeddings = 2048;

  Architecture qwen2;  // Qwen2Attention: q/k/v nn.Linear(bias=True), o_proj bias=False, whatever the config says
  qwen2.model_type = "qwen2";
  qwen2.qkv_bias = true;
  qwen2.sliding_window_rule = SlidingWindowRule::layer_types;
  qwen2.default_max_position_embeddings = 32768;
  qwen2.default_sliding_window = 4096;

  Architecture mistral;
  mistral.model_type = "mistral";
  mistral.sliding_window_rule = SlidingWindowRule::every_layer;
  mistral.default_max_position_embeddings = 4096 * 32;
  mistral.default_sliding_window = 4096;
  // Qwen3Attention: Qwen2's layer without its fixed q/k/v bias (attention_bias switches all four, as Llama's), plus
  // q_norm / k_norm; Qwen3Config's head_dim defaults to 128 instead of hidden_size / num_attention_heads.
  Architecture qwen3;
  qwen3.model_type = "qwen3";
  qwen3.attention_bias_key = "attention_bias";
  qwen3.qk_norm = true;
  qwen3.sliding_window_rule = SlidingWindowRule::layer_types;
  qwen3.default_max_position_embeddings = 32768;
  qwen3.default_sliding_window = 4096;
  qwen3.default_head_dim = 128;
  return {llama, mistral, qwen2, qwen3};
}

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = make_architectures();
  return table;
}

// Typed access to config.json with errors that name the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& document, std::string path) : document_(document), path_(std::move(path)) {}

  bool has(const std::string& key) const { return document_.contains(key) && !document_[key].is_null(); }
  bool is_null(const std::string& key) const { return document_.contains(key) && document_[key].is_null(); }
  const json& at(const std::string& key) const {
    if (!has(key)) throw Error(path_ + ": key \"" + key + "\" is missing; is this a Hugging Face model folder?");
    return document_[key];
  }
  int64_t integer(const std::string& key) const { return integer_value(at(key), key); }
  int64_t integer(const std::string& key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }
  double number(const std::string& key) const { return number_value(at(key), key); }
  double number(const std::string& key, double fallback) const { return has(key) ? number(key) : fallback; }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!document_[key].is_boolean()) throw wrong_type(key, "true or false");
    return document_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!document_[key].is_string()) throw wrong_type(key, "a string");
    return document_[key].get<std::string>();
  }

  int64_t integer_value(const json& value, const std::string& key) const {
    if (!value.is_number_integer()) throw wrong_type(key, "an integer");
    return value.get<int64_t>();
  }
  double number_value(const json& value, const std::string& key) const {
    if (!value.is_number()) throw wrong_type(key, "a number");
    return value.get<double>();
  }
  Error wrong_type(const std::string& key, const std::string& wanted) const {
    return Error(path_ + ": key \"" + key + "\" should be " + wanted + ", found " + document_.value(key, json()).dump());
  }
  Error bad_value(const std::string& key, const std::string& what) const {
    return Error(path_ + ": key \"" + key + "\" " + what);
  }
  const std::string& path() const { return path_; }

 private:
  const json& document_;
  std::string path_;
};

at::ScalarType parse_dtype(const ConfigReader& reader) {
  std::string key = reader.has("dtype") ? "dtype" : "torch_dtype";  // transformers 5 / 4 spelling
  std::string name = reader.string(key, "float32");
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw reader.bad_value(key, "is \"" + name + "\": expected float32, bfloat16 or float16");
}

// `rope` is the rope_parameters / rope_scaling object (or null); its keys are reported under `key`.
RopeParameters parse_rope(const ConfigReader& config, const json& rope, const std::string& key, double theta) {
  RopeParameters result;
  result.theta = theta;
  if (rope.is_null()) return result;
  if (!rope.is_object()) throw config.wrong_type(key, "an object");
  ConfigReader reader(rope, config.path() + " (" + key + ")");
  result.theta = reader.number("rope_theta", theta);
  // Old configs spell the type "type" (rope_scaling {"type": "linear", "factor": 2.0}).
  std::string type = reader.string("rope_type", reader.string("type", "default"));
  if (type == "default") {
    result.type = RopeType::default_rope;
  } else if (type == "linear") {
    result.type = RopeType::linear;
    result.factor = reader.number("factor");
  } else if (type == "llama3") {
    result.type = RopeType::llama3;
    result.factor = reader.number("factor");
    result.low_freq_factor = reader.number("low_freq_factor");
    result.high_freq_factor = reader.number("high_freq_factor");
    result.original_max_position_embeddings = reader.integer("original_max_position_embeddings");
  } else {
    throw reader.bad_value("rope_type", "is \"" + type + "\": supported are default, linear and llama3");
  }
  return result;
}

std::vector<int64_t> parse_sliding_windows(const ConfigReader& reader, const Architecture& arch, int64_t layers) {
  std::vector<int64_t> windows(layers, 0);
  auto window = [&] { return reader.has("sliding_window") ? reader.integer("sliding_window") : 0; };
  switch (arch.sliding_window_rule) {
    case SlidingWindowRule::none:
      break;
    case SlidingWindowRule::every_layer:
      // An absent key takes the class default (4096); an explicit null switches the window off.
      windows.assign(layers, reader.has("sliding_window")       ? window()
                             : reader.is_null("sliding_window") ? 0
                                                                : arch.default_sliding_window.value_or(0));
      break;
    case SlidingWindowRule::layer_types: {
      if (!reader.boolean("use_sliding_window", false)) break;
      int64_t size = reader.has("sliding_window") ? window() : arch.default_sliding_window.value_or(0);
      if (reader.has("layer_types")) {
        const json& types = reader.at("layer_types");
        if (!types.is_array() || static_cast<int64_t>(types.size()) != layers)
          throw reader.bad_value("layer_types", "should list one attention type per layer (" +
                                                    std::to_string(layers) + ")");
        for (int64_t i = 0; i < layers; ++i) windows[i] = types[i] == "sliding_attention" ? size : 0;
      } else {
        int64_t first = reader.integer("max_window_layers", 28);
        for (int64_t i = first; i < layers; ++i) windows[i] = size;
      }
      break;
    }
  }
  for (int64_t w : windows)
    if (w < 0) throw reader.bad_value("sliding_window", "is negative");
  return windows;
}

}  // namespace

std::string layer_tensor_name(const Architecture& arch, int64_t layer, const std::string& suffix) {
  std::string name = arch.layer_prefix;
  name.replace(name.find("{}"), 2, std::to_string(layer));
  return name + suffix;
}

const Architecture& architecture_of(const std::string& model_type) {
  for (const Architecture& arch : architectures())
    if (arch.model_type == model_type) return arch;
  throw Error("model_type \"" + model_type + "\" is not supported; supported are " + supported_model_types());
}

std::string supported_model_types() {
  std::string names;
  for (const Architecture& arch : architectures()) names += (names.empty() ? "" : ", ") + arch.model_type;
  return names;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  const json document = parse_json_file(path, "copy it again from the base model");
  if (!document.is_object()) throw Error(path + ": not a JSON object");
  ConfigReader reader(document, path);

  ModelConfig config;
  config.model_type = reader.string("model_type", "");
  if (config.model_type.empty()) throw Error(path + ": key \"model_type\" is missing; supported are " +
                                             supported_model_types());
  try {
    config.architecture = &architecture_of(config.model_type);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  const Architecture& arch = *config.architecture;

  config.vocab_size = reader.integer("vocab_size");
  config.hidden_size = reader.integer("hidden_size");
  config.intermediate_size = reader.integer("intermediate_size");
  config.num_hidden_layers = reader.integer("num_hidden_layers");
  config.num_attention_heads = reader.integer("num_attention_heads");
  config.num_key_value_heads = reader.integer("num_key_value_heads", config.num_attention_heads);
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads"})
    if (reader.has(key) && reader.integer(key) <= 0) throw reader.bad_value(key, "must be positive");
  if (config.num_attention_heads % config.num_key_value_heads != 0)
    throw reader.bad_value("num_key_value_heads", "must divide num_attention_heads");
  config.head_dim =
      reader.integer("head_dim", arch.default_head_dim.value_or(config.hidden_size / config.num_attention_heads));
  if (config.head_dim <= 0 || config.head_dim % 2 != 0) throw reader.bad_value("head_dim", "must be positive and even");
  config.rms_norm_eps = reader.number("rms_norm_eps", arch.default_rms_norm_eps);
  config.max_position_embeddings = reader.integer("max_position_embeddings", arch.default_max_position_embeddings);
  config.initializer_range = reader.number("initializer_range", 0.02);
  if (const auto it = document.find("architectures"); it != document.end() && it->is_array())
    for (const auto& name : *it)
      config.sequence_classification =
          config.sequence_classification ||
          (name.is_string() && ends_with(name.get<std::string>(), "ForSequenceClassification"));
  if (!(config.initializer_range > 0)) throw reader.bad_value("initializer_range", "must be positive");
  config.tie_word_embeddings = reader.boolean("tie_word_embeddings", false);

  bool attention_bias = arch.attention_bias_key.empty() ? false : reader.boolean(arch.attention_bias_key, false);
  config.qkv_bias = arch.qkv_bias || attention_bias;
  config.o_bias = arch.o_bias || attention_bias;
  config.qk_norm = arch.qk_norm;
  config.mlp_bias = arch.mlp_bias_key.empty() ? false : reader.boolean(arch.mlp_bias_key, false);
  // The MLP is SwiGLU (silu) in all four; another activation would silently compute something else.
  const std::string activation = reader.string("hidden_act", "silu");
  if (activation != "silu") throw reader.bad_value("hidden_act", "is \"" + activation + "\"; only silu is supported");
  config.layer_sliding_window = parse_sliding_windows(reader, arch, config.num_hidden_layers);

  // transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; 4.x wrote rope_theta + rope_scaling.
  double theta = reader.number("rope_theta", arch.default_rope_theta);
  if (reader.has("rope_parameters"))
    config.rope = parse_rope(reader, document["rope_parameters"], "rope_parameters", theta);
  else
    config.rope = parse_rope(reader, reader.has("rope_scaling") ? document["rope_scaling"] : json(), "rope_scaling",
                             theta);
  config.dtype = parse_dtype(reader);

  if (reader.has("bos_token_id")) config.bos_token_id = reader.integer("bos_token_id");
  if (reader.has("pad_token_id")) config.pad_token_id = reader.integer("pad_token_id");
  if (reader.has("eos_token_id")) {
    const json& eos = document["eos_token_id"];
    if (eos.is_array()) {
      for (const json& id : eos) config.eos_token_ids.push_back(reader.integer_value(id, "eos_token_id"));
    } else {
      config.eos_token_ids.push_back(reader.integer("eos_token_id"));
    }
  }
  return config;
}

std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, const std::string& name) {
  if (name == "q_proj") return {c.q_size(), c.hidden_size};
  if (name == "k_proj" || name == "v_proj") return {c.kv_size(), c.hidden_size};
  if (name == "o_proj") return {c.hidden_size, c.q_size()};
  if (name == "down_proj") return {c.hidden_size, c.intermediate_size};
  return {c.intermediate_size, c.hidden_size};  // gate_proj, up_proj
}

bool projection_has_bias(const ModelConfig& c, const std::string& name) {
  if (name == "q_proj" || name == "k_proj" || name == "v_proj") return c.qkv_bias;
  if (name == "o_proj") return c.o_bias;
  return c.mlp_bias;
}

// inv_freq[i] = 1 / theta^(2i / head_dim), then the scaling of the rope type. Written op for op as
// transformers (modeling_rope_utils.py) so the float32 roundings are the same: `1.0 / t` in Python is
// reciprocal(t) * 1.0, and the llama3 band edges compare in float32.
at::Tensor rope_inverse_frequencies(const ModelConfig& config) {
  const RopeParameters& rope = config.rope;
  const int64_t dim = config.head_dim;
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = at::reciprocal(at::pow(rope.theta, exponent)) * 1.0;
  switch (rope.type) {
    case RopeType::default_rope:
      return inv_freq;
    case RopeType::linear:
      return inv_freq / rope.factor;
    case RopeType::llama3: {
      const double old_context = static_cast<double>(rope.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / rope.low_freq_factor;
      const double high_freq_wavelen = old_context / rope.high_freq_factor;
      at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * M_PI);
      // Wavelengths past the old context are stretched by `factor`; short ones kept; between, blended.
      at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
      at::Tensor smooth = (at::reciprocal(wavelen) * old_context - rope.low_freq_factor) /
                          (rope.high_freq_factor - rope.low_freq_factor);
      at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
      at::Tensor medium = (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
      return at::where(medium, smoothed, scaled);
    }
  }
  return inv_freq;
}

}  // namespace autotrain
