// One decoder layer of the Llama family and the pieces it is made of (internal to src/model.cpp).
//   h   = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = rms_norm(x)
//   out = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))                          n2 = rms_norm(h)
// Qwen3 normalizes each head of q_proj(n1) and k_proj(n1) with an RMSNorm of its own (q_norm, k_norm) before rope.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "autotrain/model.h"

namespace autotrain {

// A frozen linear projection, with LoRA on top when it is a target module.
struct Projection {
  std::shared_ptr<const FrozenLinear> base;
  LoraLinear lora{nullptr};
  LoraLinear parked{nullptr};  // the LoRA layer while the model's adapters are disabled (lora is then null)

  // x (..., in) -> (..., out); with LoRA, through lora_forward_fused where use_fused_lora says.
  at::Tensor forward(const at::Tensor& x) const {
    if (!lora) return base->forward(x);
    return use_fused_lora(x) ? lora_forward_fused(*lora, x) : lora.ptr()->forward(x);
  }
};

// What every layer of one forward shares: rotary angles of the T new positions and the attention masks.
struct LayerInputs {
  at::Tensor cos, sin;  // (1, 1, T, head_dim) in the compute dtype
  // Boolean mask (B or 1, 1, T, L) per sliding window (0 = full): true where a query may attend a key.
  // Undefined: plain causal attention with SDPA's is_causal (no cache, no padding, window >= T), or for one new
  // position (T = 1) every key (a decoding step without padding, window >= L).
  std::map<int64_t, at::Tensor> masks;
  ActivationObserver* observer = nullptr;  // CausalLM::set_activation_observer's
};

class DecoderLayer {
 public:
  DecoderLayer(int64_t index, const ModelConfig& config, int64_t sliding_window)
      : index_(index), config_(config), sliding_window_(sliding_window) {}

  // hidden (B,T,C) -> (B,T,C). With a cache, appends this layer's keys/values and attends to all of them.
  at::Tensor forward(const at::Tensor& hidden, const LayerInputs& inputs, KVCache* cache) const;
  // The same, recomputed in the backward instead of keeping activations (reentrant checkpoint).
  at::Tensor forward_checkpointed(const at::Tensor& hidden, const LayerInputs& inputs) const;

  int64_t sliding_window() const { return sliding_window_; }
  int64_t index() const { return index_; }

  at::Tensor input_layernorm, post_attention_layernorm;  // (C,)
  at::Tensor q_norm, k_norm;                              // (head_dim,) with Architecture::qk_norm, else undefined
  std::map<std::string, Projection> projections;          // by name: q_proj, ..., down_proj

 private:
  at::Tensor attention(const at::Tensor& x, const LayerInputs& inputs, KVCache* cache) const;
  at::Tensor mlp(const at::Tensor& x, const LayerInputs& inputs) const;
  // q_proj(x), k_proj(x), v_proj(x), (B,T,out) each; fused LoRA when all three carry it (src/lora.h).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> project_qkv(const at::Tensor& x) const;
  const Projection& projection(const char* name) const { return projections.at(name); }
  // Shows x, the input of `site`'s projections, to the forward's observer, if any.
  void observe(const LayerInputs& inputs, const char* site, const at::Tensor& x) const {
    if (inputs.observer) inputs.observer->observe(index_, site, x.detach());
  }

  int64_t index_;
  ModelConfig config_;  // a copy: the layer outlives moves of its CausalLM
  int64_t sliding_window_;
};

}  // namespace autotrain
