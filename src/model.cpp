#include "autotrain/model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <set>

#include "autotrain/adapter.h"
#include "autotrain/config.h"
#include "autotrain/cpu_linear.h"
#include "autotrain/error.h"
#include "autotrain/logging.h"
#include "autotrain/safetensors.h"
#include "autotrain/text_util.h"
#include "decoder_layer.h"

namespace autotrain {

namespace {

// Hands out checkpoint tensors one at a time, each checked against the shape config.json implies, and
// remembers which were used so that the rest can be reported.
class WeightLoader {
 public:
  WeightLoader(const std::string& model_dir, const ModelConfig& config, const ModelOptions& options)
      : model_dir_(model_dir), config_(config), checkpoint_(Checkpoint::open(model_dir)),
        transform_(options.weight_transform) {}

  bool has(const std::string& name) const { return checkpoint_.has(name); }

  // The tensor as stored (a view of the mapped file): callers convert or quantize it one tensor at a time,
  // so the peak stays near the final model size.
  at::Tensor take(const std::string& name, std::vector<int64_t> shape) {
    if (!checkpoint_.has(name))
      throw Error(model_dir_ + ": tensor " + name + " is missing from the checkpoint; config.json (model_type " +
                  config_.model_type + ") needs it. Is the folder complete?");
    const TensorInfo& info = checkpoint_.info(name);
    const std::string& file = checkpoint_.path_of(name);
    if (info.shape != shape)
      throw Error(file + ": tensor " + name + " has shape " + shape_text(info.shape) + ", config.json wants " +
                  shape_text(shape));
    if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16")
      throw Error(file + ": tensor " + name + " has dtype " + info.dtype + "; expected F32, F16 or BF16");
    used_.insert(name);
    return transform_ ? transform_(name, checkpoint_.tensor(name)) : checkpoint_.tensor(name);
  }
  void ignore(const std::string& name) { used_.insert(name); }

  void warn_unused() const {
    for (const std::string& name : checkpoint_.names()) {
      // Old checkpoints carry the rotary buffer; it is recomputed from config.json, as transformers does.
      if (!used_.count(name) && !ends_with(name, "rotary_emb.inv_freq"))
        log::warn(log::cat(checkpoint_.path_of(name), ": tensor ", name, " is not used by a ", config_.model_type,
                           " model; ignored"));
    }
  }

 private:
  std::string model_dir_;
  const ModelConfig& config_;
  Checkpoint checkpoint_;
  std::function<at::Tensor(const std::string&, const at::Tensor&)> transform_;
  std::set<std::string> used_;
};

// PEFT builds lora_A and lora_B as nn.Linear (each constructor draws a kaiming-uniform init) and then
// redraws A; skipping the same draws makes A identical to PEFT's for the same torch seed.
void skip_peft_linear_init_draws(int64_t r, int64_t in_features, int64_t out_features) {
  at::NoGradGuard no_grad;
  at::empty({r, in_features}, at::kFloat).uniform_();
  at::empty({out_features, r}, at::kFloat).uniform_();
}

// (B or 1, 1, T, L) bool, true where query t (position past + t) may attend key j: j <= past + t, within
// the window, and not padding. A query always sees itself, so that the row of a padding query is never
// empty (an empty row is NaN in SDPA and would spread through the values of the next layer).
// Undefined when it allows every key to every query but the causal order, i.e. when SDPA's is_causal says the same
// (no cache), and when one new query sees every key (a decoding step without padding, inside the window): what
// DecoderLayer::attention takes as is_causal for T > 1 and as no mask for T = 1.
at::Tensor build_attention_mask(int64_t past, int64_t T, int64_t window, const at::Tensor& key_mask,
                                at::Device device) {
  const int64_t L = past + T;
  if (!key_mask.defined() && (past == 0 || T == 1) && (window == 0 || window >= L)) return {};
  const auto positions = at::TensorOptions(at::kLong).device(device);
  at::Tensor query = at::arange(past, L, positions).unsqueeze(1);
  at::Tensor key = at::arange(0, L, positions).unsqueeze(0);
  at::Tensor allowed = key <= query;
  if (window > 0) allowed = allowed.logical_and(query - key < window);
  allowed = allowed.view({1, 1, T, L});
  if (key_mask.defined()) allowed = allowed.logical_and(key_mask.view({key_mask.size(0), 1, 1, L}));
  return allowed.logical_or((key == query).view({1, 1, T, L}));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The load's one line in the log, so that a user sees where load time goes (quantizing an 8B model on the
// CPU once took minutes): how many parameters were quantized, on which device, and how long that and the
// whole load took. An unquantized load says it at debug level only: `generate` (which never quantizes)
// prints nothing before its text on the CPU.
void log_load_time(const std::string& model_dir, const ModelOptions& options, int64_t quantized_parameters,
                   double quantize_seconds, double load_seconds) {
  const std::string loaded = log::cat("loaded ", model_dir, " in ", std::fixed, std::setprecision(2), load_seconds, " s");
  if (quantized_parameters == 0) {
    log::debug(loaded + " (no quantization)");
    return;
  }
  std::string quantization = "int8";
  if (options.quantization == BaseQuantization::int4)
    quantization = std::string("int4 ") + (options.four_bit.type == QuantType::nf4 ? "nf4" : "fp4") +
                   (options.four_bit.double_quantize ? ", double quantization" : "");
  log::info(log::cat(loaded, ": ", quantized_parameters, " parameters quantized (", quantization, ") on ",
                     options.device.str(), " in ", std::fixed, std::setprecision(2), quantize_seconds, " s"));
}

}  // namespace

CausalLM::CausalLM(const std::string& model_dir, const ModelOptions& options)
    : config_(load_model_config(model_dir)), options_(options) {
  for (const std::string& target : options_.lora_target_modules)
    if (std::find(linear_module_names().begin(), linear_module_names().end(), target) == linear_module_names().end())
      throw config_error("lora target module \"" + target +
                         "\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
  const ModelConfig& c = config_;
  if (c.sequence_classification)
    throw Error(model_dir + "/config.json: a sequence-classification model (e.g. a merged reward model: a score head, "
                "no LM head); load the causal-LM base it was trained on, with its reward adapter for `eval --trainer "
                "reward`");
  const Architecture& arch = *c.architecture;
  const at::ScalarType dtype = options_.dtype;
  const at::Device device = options_.device;
  const auto load_start = std::chrono::steady_clock::now();
  WeightLoader loader(model_dir, c, options_);
  at::NoGradGuard no_grad;
  int64_t quantized_parameters = 0;
  double quantize_seconds = 0;

  // Each tensor is converted on the CPU, then moved (a 4-bit weight is quantized on its GPU): one tensor
  // at a time in host memory.
  embed_tokens_ = loader.take(arch.embed_tokens, {c.vocab_size, c.hidden_size}).to(dtype).to(device);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto layer = std::make_unique<DecoderLayer>(i, c, c.layer_sliding_window[i]);
    const std::string prefix = layer_tensor_name(arch, i, "");
    layer->input_layernorm = loader.take(prefix + "input_layernorm.weight", {c.hidden_size}).to(dtype).to(device);
    layer->post_attention_layernorm =
        loader.take(prefix + "post_attention_layernorm.weight", {c.hidden_size}).to(dtype).to(device);
    if (c.qk_norm) {
      layer->q_norm = loader.take(prefix + "self_attn.q_norm.weight", {c.head_dim}).to(dtype).to(device);
      layer->k_norm = loader.take(prefix + "self_attn.k_norm.weight", {c.head_dim}).to(dtype).to(device);
    }
    for (const std::string& name : linear_module_names()) {
      const std::string path = prefix + module_parent(name) + "." + name;
      auto [out, in] = projection_shape(c, name);
      at::Tensor weight = loader.take(path + ".weight", {out, in});
      at::Tensor bias = projection_has_bias(c, name) ? loader.take(path + ".bias", {out}) : at::Tensor();
      // The quantization time includes a GPU weight's upload: each upload from pageable memory waits for
      // the stream, so the clock also covers the previous weight's quantization kernels.
      const auto quantize_start = std::chrono::steady_clock::now();
      // A 4-bit weight bound for a GPU goes there in its stored dtype and is quantized there (the CPU's
      // bytes, much faster): one tensor at a time, so host and device hold one dense weight at most.
      if (options_.quantization == BaseQuantization::int4 && device.is_cuda()) weight = weight.to(device);
      auto base = std::make_shared<FrozenLinear>(weight, bias, options_.quantization, dtype, options_.four_bit);
      if (options_.quantization != BaseQuantization::none) {
        quantized_parameters += out * in;
        quantize_seconds += seconds_since(quantize_start);
      }
      base->to(device);
      if (options_.gemv_tiles) base->tile_for_gemv(dtype);
      Projection projection;
      projection.base = base;
      const auto& targets = options_.lora_target_modules;
      if (std::find(targets.begin(), targets.end(), name) != targets.end()) {
        skip_peft_linear_init_draws(options_.lora.r, in, out);
        projection.lora = LoraLinear(projection.base, options_.lora);  // drawn from the CPU generator
        projection.lora->to(device);
      }
      layer->projections.emplace(name, std::move(projection));
    }
    layers_.push_back(std::move(layer));
  }
  final_norm_ = loader.take(arch.final_norm, {c.hidden_size}).to(dtype).to(device);
  if (c.tie_word_embeddings) {
    lm_head_ = embed_tokens_;
    loader.ignore(arch.lm_head);  // transformers ties it to the embedding whatever the file holds
  } else {
    lm_head_ = loader.take(arch.lm_head, {c.vocab_size, c.hidden_size}).to(dtype).to(device);
  }
  loader.warn_unused();
  inv_freq_ = rope_inverse_frequencies(c).to(device);
  set_training(false);
  log_load_time(model_dir, options_, quantized_parameters, quantize_seconds, seconds_since(load_start));
  if (options_.gemv_tiles && device.is_cuda())
    log::info(log::cat("gemv_tiles layout: ", gemv_tiled_projections(), " of ",
                       c.num_hidden_layers * static_cast<int64_t>(linear_module_names().size()),
                       " projections (the others are not 4-bit on a GPU, or the tensor-core GEMV cannot take them)"));
}

CausalLM::~CausalLM() = default;
CausalLM::CausalLM(CausalLM&&) noexcept = default;
CausalLM& CausalLM::operator=(CausalLM&&) noexcept = default;

int64_t CausalLM::gemv_tiled_projections() const {
  int64_t tiled = 0;
  for (const auto& layer : layers_)
    for (const auto& [name, projection] : layer->projections) tiled += projection.base->gemv_tiled() ? 1 : 0;
  return tiled;
}

KVCache CausalLM::make_cache() const { return KVCache(config_.num_hidden_layers); }

void CausalLM::set_training(bool training) {
  training_ = training;
  for (auto& layer : layers_)
    for (auto& [name, projection] : layer->projections) {
      if (projection.lora) projection.lora->train(training);
      if (projection.parked) projection.parked->train(training);
    }
}

void CausalLM::set_adapters_enabled(bool enabled) {
  adapters_enabled_ = enabled;
  for (auto& layer : layers_)
    for (auto& [name, projection] : layer->projections) {
      if (enabled && projection.parked) std::swap(projection.lora, projection.parked);
      if (!enabled && projection.lora) std::swap(projection.lora, projection.parked);
    }
}

std::vector<std::pair<std::string, at::Tensor>> CausalLM::lora_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  for (const auto& layer : layers_) {
    for (const std::string& name : linear_module_names()) {
      const Projection& projection = layer->projections.at(name);
      const LoraLinear& lora = projection.lora ? projection.lora : projection.parked;
      if (!lora) continue;
      parameters.emplace_back(peft_lora_tensor_name(layer->index(), name, true), lora->lora_A);
      parameters.emplace_back(peft_lora_tensor_name(layer->index(), name, false), lora->lora_B);
    }
  }
  return parameters;
}

// input_ids (B,T) -> logits (B,T,V), fp32 from the compute dtype's GEMM as transformers.
at::Tensor CausalLM::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) {
  return frozen_dense_linear(hidden_states(input_ids, attention_mask, cache), lm_head_).to(at::kFloat);
}

at::Tensor CausalLM::next_token_logits(const at::Tensor& input_ids, KVCache* cache) {
  at::Tensor last = hidden_states(input_ids, {}, cache).select(1, -1);  // (B, C)
  return frozen_dense_linear(last, lm_head_).to(at::kFloat);
}

// input_ids (B,T) -> hidden (B,T,C): it flows through the layers and the final norm in the compute dtype.
at::Tensor CausalLM::hidden_states(const at::Tensor& input_ids_anywhere, const at::Tensor& attention_mask_anywhere,
                                   KVCache* cache) {
  const at::Device device = options_.device;
  const at::Tensor input_ids = input_ids_anywhere.to(device);
  const at::Tensor attention_mask =
      attention_mask_anywhere.defined() ? attention_mask_anywhere.to(device) : at::Tensor();
  if (input_ids.dim() != 2 || input_ids.scalar_type() != at::kLong)
    throw Error("CausalLM: input_ids must be (B, T) int64, got " + shape_text(input_ids.sizes()) + " " +
                std::string(c10::toString(input_ids.scalar_type())));
  if (attention_mask.defined() && attention_mask.sizes() != input_ids.sizes())
    throw Error("CausalLM: attention_mask " + shape_text(attention_mask.sizes()) +
                " must have the shape of input_ids " + shape_text(input_ids.sizes()));
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  if (cache && cache->num_layers() != config_.num_hidden_layers)
    throw Error("CausalLM: the KV cache was made for another model");

  // Which keys are real tokens: the cached ones and the new ones.
  at::Tensor key_mask = attention_mask.defined() ? attention_mask.to(at::kBool) : at::Tensor();
  if (cache && (key_mask.defined() || cache->key_mask_.defined())) {
    const auto flags = at::TensorOptions(at::kBool).device(device);
    at::Tensor old_keys = cache->key_mask_.defined() ? cache->key_mask_ : at::ones({B, past}, flags);
    at::Tensor new_keys = key_mask.defined() ? key_mask : at::ones({B, T}, flags);
    key_mask = at::cat({old_keys, new_keys}, 1);
    cache->key_mask_ = key_mask;
  }

  // Rotary angles in float32 (transformers computes them with autocast off), then the compute dtype.
  LayerInputs inputs;
  at::Tensor positions = at::arange(past, past + T, at::TensorOptions(at::kLong).device(device)).to(at::kFloat);
  at::Tensor freqs = positions.unsqueeze(-1) * inv_freq_;  // (T, D/2)
  at::Tensor angles = at::cat({freqs, freqs}, -1).view({1, 1, T, config_.head_dim});
  inputs.cos = angles.cos().to(options_.dtype);
  inputs.sin = angles.sin().to(options_.dtype);
  for (int64_t window : config_.layer_sliding_window)
    if (!inputs.masks.count(window)) inputs.masks[window] = build_attention_mask(past, T, window, key_mask, device);
  inputs.observer = observer_;

  at::Tensor hidden = at::embedding(embed_tokens_, input_ids);
  const bool checkpoint = options_.gradient_checkpointing && !cache && at::GradMode::is_enabled();
  // A checkpointed layer only joins the graph through an input that requires grad; the embedding is frozen.
  if (checkpoint && !hidden.requires_grad()) hidden = hidden.detach().requires_grad_(true);
  for (const auto& layer : layers_)
    hidden = checkpoint ? layer->forward_checkpointed(hidden, inputs) : layer->forward(hidden, inputs, cache);
  if (cache) cache->length_ += T;
  at::Tensor normed = rms_norm(hidden, final_norm_, config_.rms_norm_eps);
  if (observer_) observer_->observe(-1, "lm_head", normed.detach());
  return normed;
}

// logits (B,T,V), labels (B,T) int64 -> scalar. As transformers: labels padded on the right with -100 and
// shifted by one, cross entropy over all B*T positions with ignore_index -100, mean over counted tokens.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  if (logits.dim() != 3 || labels.dim() != 2 || logits.size(0) != labels.size(0) || logits.size(1) != labels.size(1))
    throw Error("causal_lm_loss: logits (B,T,V) and labels (B,T) do not match: " + shape_text(logits.sizes()) +
                " and " + shape_text(labels.sizes()));
  at::Tensor padded = at::constant_pad_nd(labels.to(logits.device(), at::kLong), {0, 1}, -100);
  at::Tensor shifted = padded.narrow(1, 1, labels.size(1)).contiguous();
  const int64_t V = logits.size(2);
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, V}), shifted.view({-1}), /*weight=*/{},
                                at::Reduction::Mean, /*ignore_index=*/-100);
}

}  // namespace autotrain
