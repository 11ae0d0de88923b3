// A Hugging Face decoder's config.json (Llama, Qwen2, Qwen3, Mistral), and the architecture table that says how
// those four differ: defaults, bias flags, sliding-window rule, tensor names. Everything downstream (the
// decoder, the loader) reads these structs; nothing branches on the model_type string.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace autotrain {

// How an architecture decides which layers attend through a sliding window.
enum class SlidingWindowRule {
  none,         // Llama: full causal attention everywhere
  every_layer,  // Mistral: config "sliding_window" (null = off) applies to all layers
  layer_types,  // Qwen2, Qwen3: only when "use_sliding_window"; layers whose layer_types entry is
                // "sliding_attention" (default: layer index >= "max_window_layers")
};

// One row of the architecture table. Tensor names take the layer index for "{}".
struct Architecture {
  std::string model_type;
  // Biases: a config key that switches them (empty = fixed by the architecture) and the fixed/default value.
  std::string attention_bias_key;  // Llama: "attention_bias" switches q/k/v/o together
  bool qkv_bias = false;
  bool o_bias = false;
  std::string mlp_bias_key;  // Llama: "mlp_bias"
  SlidingWindowRule sliding_window_rule = SlidingWindowRule::none;
  // Qwen3: an RMSNorm over each head of q and of k (self_attn.q_norm / k_norm, head_dim wide), before rope.
  bool qk_norm = false;
  // transformers' defaults for keys a config.json may omit.
  double default_rms_norm_eps = 1e-6;
  double default_rope_theta = 10000.0;
  int64_t default_max_position_embeddings = 2048;
  std::optional<int64_t> default_sliding_window;
  std::optional<int64_t> default_head_dim;  // unset: hidden_size / num_attention_heads (Qwen3Config: 128)
  // Checkpoint tensor names.
  std::string embed_tokens = "model.embed_tokens.weight";
  std::string layer_prefix = "model.layers.{}.";  // + "self_attn.q_proj.weight", "input_layernorm.weight", ...
  std::string final_norm = "model.norm.weight";
  std::string lm_head = "lm_head.weight";
};

// The row for a model_type; throws Error listing the supported ones for another.
const Architecture& architecture_of(const std::string& model_type);
// The checkpoint name of a layer's tensor: layer_prefix with the index filled in, then `suffix`
// ("model.layers.3." + "self_attn.q_proj.weight").
std::string layer_tensor_name(const Architecture& arch, int64_t layer, const std::string& suffix);
// "llama, mistral, qwen2, qwen3"
std::string supported_model_types();

enum class RopeType { default_rope, linear, llama3 };

// transformers' rope_parameters (rope_scaling in older configs), standardised.
struct RopeParameters {
  RopeType type = RopeType::default_rope;
  double theta = 10000.0;
  double factor = 1.0;                              // linear, llama3
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type;
  const Architecture* architecture = nullptr;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads (no GQA)
  int64_t head_dim = 0;             // default: the architecture's, else hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  double initializer_range = 0.02;  // the std of transformers' normal init (a reward model's new score head)
  // architectures[0] ends with "ForSequenceClassification" (a merged reward model): a score head, no LM head.
  bool sequence_classification = false;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections carry a bias
  bool o_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3: q_norm / k_norm weights (head_dim,) per layer
  // Window of each layer in tokens (0 = full causal attention): a query at position i sees keys j with
  // i - window < j <= i, as transformers' sliding-window mask.
  std::vector<int64_t> layer_sliding_window;
  RopeParameters rope;
  at::ScalarType dtype = at::kFloat;  // torch_dtype / dtype of the checkpoint (float32 when absent)
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;  // config "eos_token_id": an int or a list

  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
};

// Reads model_dir/config.json; throws Error naming config.json and the key that is missing, of the wrong
// type or of an unsupported value.
ModelConfig load_model_config(const std::string& model_dir);

// (out, in) of a linear projection (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj), and
// whether it carries a bias.
std::pair<int64_t, int64_t> projection_shape(const ModelConfig& config, const std::string& name);
bool projection_has_bias(const ModelConfig& config, const std::string& name);

// The rotary inverse frequencies, float32 (head_dim / 2,), as transformers' ROPE_INIT_FUNCTIONS computes
// them for rope_type default, linear and llama3.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

}  // namespace autotrain
