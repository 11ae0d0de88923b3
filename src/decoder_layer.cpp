#include "decoder_layer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "autotrain/cuda_ops.h"
#include "autotrain/device.h"

namespace autotrain {

bool use_fused_ops(const at::Tensor& x) {
  static const bool enabled = [] {
    const char* value = std::getenv("AUTOTRAIN_FUSED_OPS");
    return value == nullptr || std::string(value) != "0";
  }();
  return enabled && x.is_cuda() && cuda_kernels_built();
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (use_fused_ops(x) && rms_norm_cuda_supports(x, weight)) return rms_norm_cuda(x, weight, eps);
  return rms_norm_composite(x, weight, eps);
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (use_fused_ops(gate) && swiglu_cuda_supports(gate, up)) return swiglu_cuda(gate, up);
  return swiglu_composite(gate, up);
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (use_fused_ops(x) && rotary_cuda_supports(x, cos, sin)) return rotary_cuda(x, cos, sin);
  return apply_rotary_composite(x, cos, sin);
}

void KVCache::clear() {
  for (auto& k : keys_) k = at::Tensor();
  for (auto& v : values_) v = at::Tensor();
  key_mask_ = at::Tensor();
  length_ = 0;
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  at::Tensor& k = keys_.at(layer);
  at::Tensor& v = values_.at(layer);
  const int64_t past = length_, total = length_ + keys.size(2);
  if (at::GradMode::is_enabled() && (keys.requires_grad() || values.requires_grad())) {
    // With autograd: concatenation, which the graph follows (a copy of the whole cache per step).
    k = past > 0 ? at::cat({k.narrow(2, 0, past), keys}, 2) : keys;
    v = past > 0 ? at::cat({v.narrow(2, 0, past), values}, 2) : values;
    return {k, v};
  }
  // In place: the buffer grows (by half at least, to the reserved room at first) only when full.
  auto place = [&](at::Tensor& buffer, const at::Tensor& added) {
    if (!buffer.defined() || buffer.size(2) < total) {
      const int64_t capacity =
          std::max({total, reserved_, buffer.defined() ? buffer.size(2) + buffer.size(2) / 2 : int64_t{0}});
      std::vector<int64_t> shape = added.sizes().vec();
      shape[2] = capacity;
      at::Tensor grown = at::empty(shape, added.options());
      if (past > 0) grown.narrow(2, 0, past).copy_(buffer.narrow(2, 0, past));
      buffer = grown;
    }
    buffer.narrow(2, past, total - past).copy_(added);
    return buffer.narrow(2, 0, total);
  };
  at::NoGradGuard no_grad;
  return {place(k, keys), place(v, values)};
}

namespace {

// (B, kv_heads, L, D) -> (B, kv_heads * groups, L, D): each key/value head serves `groups` query heads,
// as transformers' repeat_kv.
at::Tensor repeat_kv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  auto s = x.sizes();
  return x.unsqueeze(2).expand({s[0], s[1], groups, s[2], s[3]}).reshape({s[0], s[1] * groups, s[2], s[3]});
}

}  // namespace

// x (B,T,C) -> (B,T,C). q (B,H,T,D), k/v (B,KV,L,D) with L = cached + T.
at::Tensor DecoderLayer::attention(const at::Tensor& x, const LayerInputs& inputs, KVCache* cache) const {
  const int64_t B = x.size(0), T = x.size(1), D = config_.head_dim;
  observe(inputs, "attn_qkv", x);
  at::Tensor q, k, v;
  std::tie(q, k, v) = project_qkv(x);
  q = q.view({B, T, -1, D});
  k = k.view({B, T, -1, D});
  if (q_norm.defined()) {  // Qwen3: each head normalized over its D values
    q = rms_norm(q, q_norm, config_.rms_norm_eps);
    k = rms_norm(k, k_norm, config_.rms_norm_eps);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  v = v.view({B, T, -1, D}).transpose(1, 2);
  q = apply_rotary(q, inputs.cos, inputs.sin);
  k = apply_rotary(k, inputs.cos, inputs.sin);
  if (cache) std::tie(k, v) = cache->append(index_, k, v);
  const int64_t groups = config_.num_attention_heads / config_.num_key_value_heads;
  const at::Tensor& mask = inputs.masks.at(sliding_window_);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (cache && groups > 1 && (mask.defined() || T == 1)) {
    // With a cache (generation), the keys and values are not repeated for each query head: the `groups` query
    // heads of a key/value head become rows of one (B, KV, groups T, D) query, and each row's mask is its
    // position's (none for one new position that sees every key). Each row's attention is the same sum as
    // before; repeating the cache instead copied it groups times per layer and step (the bulk of a step's memory
    // traffic at long contexts).
    const int64_t KV = config_.num_key_value_heads;
    at::Tensor grouped_q = q.reshape({B, KV, groups * T, D});
    std::optional<at::Tensor> grouped_mask;
    if (mask.defined()) grouped_mask = mask.repeat({1, 1, groups, 1});
    at::Tensor out = at::scaled_dot_product_attention(grouped_q, k, v, grouped_mask, /*dropout_p=*/0.0,
                                                      /*is_causal=*/false, scale);
    // reshape, not view: SDPA's CUDA kernels may return the (B, KV, groups T, D) output with another stride order.
    out = out.reshape({B, KV * groups, T, D}).transpose(1, 2).reshape({B, T, -1});
    observe(inputs, "attn_output", out);
    return projection("o_proj").forward(out);
  }
  k = repeat_kv(k, groups);
  v = repeat_kv(v, groups);
  // No mask: causal over T new positions, or nothing to mask for one (T = 1 sees every key; SDPA's is_causal would
  // align its triangle to the first key).
  at::Tensor out = at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask)
                                                                              : std::nullopt,
                                                    /*dropout_p=*/0.0, /*is_causal=*/!mask.defined() && T > 1, scale);
  out = out.transpose(1, 2).reshape({B, T, -1});
  observe(inputs, "attn_output", out);
  return projection("o_proj").forward(out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> DecoderLayer::project_qkv(const at::Tensor& x) const {
  const Projection& q = projection("q_proj");
  const Projection& k = projection("k_proj");
  const Projection& v = projection("v_proj");
  const std::vector<const FrozenLinear*> bases{q.base.get(), k.base.get(), v.base.get()};
  if (!q.lora && !k.lora && !v.lora) {
    std::vector<at::Tensor> out = FrozenLinear::forward_all(bases, x);
    return {out[0], out[1], out[2]};
  }
  const bool fusable = q.lora && k.lora && v.lora && !q.lora->dropout_active() && !k.lora->dropout_active() &&
                       !v.lora->dropout_active();
  if (!fusable || !use_fused_lora(x)) return {q.forward(x), k.forward(x), v.forward(x)};
  std::vector<at::Tensor> out =
      fused_lora(x, FrozenLinear::forward_all(bases, x), {q.lora.get(), k.lora.get(), v.lora.get()});
  return {out[0], out[1], out[2]};
}

// x (B,T,C) -> (B,T,C) through (B,T,intermediate).
at::Tensor DecoderLayer::mlp(const at::Tensor& x, const LayerInputs& inputs) const {
  const Projection& gate = projection("gate_proj");
  const Projection& up = projection("up_proj");
  observe(inputs, "ffn_gate_up", x);
  at::Tensor activated;
  if (!gate.lora && !up.lora) {
    std::vector<at::Tensor> out = FrozenLinear::forward_all({gate.base.get(), up.base.get()}, x);
    activated = swiglu(out[0], out[1]);
  } else {
    // gate before up, as transformers: with LoRA dropout the two draw their masks in that order
    at::Tensor gate_out = gate.forward(x);
    at::Tensor up_out = up.forward(x);
    activated = swiglu(gate_out, up_out);
  }
  observe(inputs, "ffn_down", activated);
  return projection("down_proj").forward(activated);
}

at::Tensor DecoderLayer::forward(const at::Tensor& hidden, const LayerInputs& inputs, KVCache* cache) const {
  at::Tensor h = hidden + attention(rms_norm(hidden, input_layernorm, config_.rms_norm_eps), inputs, cache);
  return h + mlp(rms_norm(h, post_attention_layernorm, config_.rms_norm_eps), inputs);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Puts a saved generator state in place for its lifetime, then the one it found back.
class RngStateScope {
 public:
  RngStateScope(at::Device device, const at::Tensor& state) : device_(device), outside_(rng_state(device)) {
    set_rng_state(device, state);
  }
  ~RngStateScope() { set_rng_state(device_, outside_); }
  RngStateScope(const RngStateScope&) = delete;
  RngStateScope& operator=(const RngStateScope&) = delete;

 private:
  at::Device device_;
  at::Tensor outside_;
};

struct SavedInputs : public torch::CustomClassHolder {
  explicit SavedInputs(LayerInputs value) : inputs(std::move(value)) {}
  LayerInputs inputs;
};

// Reentrant activation checkpoint of one layer (torch.utils.checkpoint with use_reentrant=True): the forward
// runs without a graph and keeps only the layer's input; the backward re-runs the layer with grad enabled
// from the same state of the device's RNG, the one LoRA dropout draws from there (identical dropout masks),
// and backpropagates through it, which accumulates the LoRA gradients and yields the input's gradient.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const DecoderLayer* layer,
                            const LayerInputs* inputs) {
    ctx->save_for_backward({hidden});
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["rng"] = rng_state(hidden.device());
    // The caller's LayerInputs are gone by the backward: keep a copy (its tensors are shared, not copied), without
    // the observer (the recomputation is not another forward to see).
    LayerInputs kept = *inputs;
    kept.observer = nullptr;
    ctx->saved_data["inputs"] = c10::IValue::make_capsule(c10::make_intrusive<SavedInputs>(std::move(kept)));
    return layer->forward(hidden, *inputs, nullptr);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto* layer = reinterpret_cast<const DecoderLayer*>(ctx->saved_data["layer"].toInt());
    auto saved = c10::static_intrusive_pointer_cast<SavedInputs>(ctx->saved_data["inputs"].toCapsule());
    const LayerInputs& inputs = saved->inputs;
    at::Tensor hidden = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    {
      RngStateScope rng(hidden.device(), ctx->saved_data["rng"].toTensor());
      at::AutoGradMode enable_grad(true);
      at::Tensor output = layer->forward(hidden, inputs, nullptr);
      torch::autograd::backward({output}, {grad_outputs[0]});
    }
    return {hidden.grad(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor DecoderLayer::forward_checkpointed(const at::Tensor& hidden, const LayerInputs& inputs) const {
  return CheckpointedLayer::apply(hidden, this, &inputs);
}

}  // namespace autotrain
