// The decoder-only transformer of Llama, Qwen2 and Mistral (transformers' *ForCausalLM), in libtorch:
// token embedding, num_hidden_layers x [RMSNorm, grouped-query attention with RoPE, RMSNorm, SwiGLU MLP],
// final RMSNorm, lm_head (tied to the embedding or not). Loaded from a Hugging Face folder (config.json +
// safetensors); the 7 linear projections of each layer are frozen (dense, NF4 or int8) and optionally
// carry LoRA. Numerically it follows transformers op for op, so fp32 logits match to float rounding.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autotrain/frozen_linear.h"
#include "autotrain/layer_composites.h"
#include "autotrain/lora.h"
#include "autotrain/model_config.h"

namespace autotrain {

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;                       // unquantized weights and compute: fp32/fp16/bf16
  BaseQuantization quantization = BaseQuantization::none;  // the 7 linear projections only
  FourBitOptions four_bit;                                 // NF4/FP4, double quantization
  std::vector<std::string> lora_target_modules;  // subset of q_proj..down_proj; empty = no LoRA
  LoraOptions lora;
  bool gradient_checkpointing = false;  // recompute each decoder layer in the backward
  // Where the weights live and the forward runs. Every tensor is read, converted and (LoRA) initialised on
  // the CPU exactly as for a CPU model, then moved; a 4-bit weight is moved first and quantized on the GPU,
  // to the same bytes (quantize_4bit_torch). So a CUDA model starts from the same values.
  at::Device device = at::kCPU;
  // Generation: each 4-bit projection on a GPU in the tensor-core GEMV's gemv_tiles layout where that kernel takes it
  // at `dtype` (FrozenLinear::tile_for_gemv; `generate` sets it unless AUTOTRAIN_GEMV_TILES=0, src/cuda_ops.h). The
  // logits are the same bits either way.
  bool gemv_tiles = false;
  // Applied to each checkpoint tensor as it is read, by its checkpoint name (eval --gguf-type: the weights as a
  // GGUF file of that type stores them, gguf_round_trip); none: the tensors as stored.
  std::function<at::Tensor(const std::string& name, const at::Tensor& tensor)> weight_transform;
};

// Keys and values of every layer for the positions seen so far; grows as forward() appends tokens. Without
// autograd (generation) each layer's keys and values live in a buffer of room for `reserve`d positions (or more,
// growing by half), written in place: appending one position copies one position, where concatenating copied
// the whole cache every step. Moved, not copied (two caches would write into one buffer).
class KVCache {
 public:
  int64_t length() const { return length_; }
  int64_t num_layers() const { return static_cast<int64_t>(keys_.size()); }
  void clear();
  // Room for `positions` in all (the prompt and the tokens to come), taken at the next append.
  void reserve(int64_t positions) { reserved_ = positions; }
  KVCache(KVCache&&) = default;
  KVCache& operator=(KVCache&&) = default;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

 private:
  friend class CausalLM;
  friend class DecoderLayer;
  explicit KVCache(int64_t num_layers) : keys_(num_layers), values_(num_layers) {}
  // keys/values (B, kv_heads, T, head_dim) of layer `layer` appended; returns all (B, kv_heads, L + T, hd).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& keys, const at::Tensor& values);

  // Per layer: (B, kv_heads, capacity, hd), of which the first length_ positions hold the cache.
  std::vector<at::Tensor> keys_, values_;
  at::Tensor key_mask_;  // (B, L) bool, false at padding; undefined while nothing is cached
  int64_t length_ = 0, reserved_ = 0;
};

class DecoderLayer;  // src/decoder_layer.h

// Sees what each layer's projections take in as a forward computes it (autotrain imatrix's statistics): `site` is
// "attn_qkv" (the input of q_proj, k_proj and v_proj), "attn_output" (o_proj's), "ffn_gate_up" (gate_proj's and
// up_proj's) or "ffn_down" (down_proj's) of layer `layer`, or "lm_head" (layer -1: the final norm's output). x is
// (B, T, in) in the compute dtype, without a graph.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void observe(int64_t layer, const char* site, const at::Tensor& x) = 0;
};

class CausalLM {
 public:
  // Reads model_dir/config.json and its safetensors (one file or shards), layer by layer, converting or
  // quantizing each tensor as it goes. Throws Error naming the file and tensor that is missing or wrong.
  CausalLM(const std::string& model_dir, const ModelOptions& options);
  ~CausalLM();
  CausalLM(CausalLM&&) noexcept;
  CausalLM& operator=(CausalLM&&) noexcept;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  at::Device device() const { return options_.device; }

  // input_ids (B,T) int64; attention_mask (B,T) 1 = token, 0 = padding (undefined = all ones); with a cache
  // the T tokens follow the cache's L positions (positions L..L+T-1). Pad on the right: positions are the
  // index in the sequence, as transformers' forward without position_ids. Returns logits (B,T,vocab) fp32
  // on the model's device (the inputs are moved there).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {}, KVCache* cache = nullptr);
  // The logits of the last position only, (B, vocab) fp32, without padding (what generation takes of a prompt): the
  // LM head runs on one position per sequence instead of T (transformers' logits_to_keep=1). A 4,096-token prompt
  // on a 128K vocabulary no longer holds 2 GiB of fp32 logits.
  at::Tensor next_token_logits(const at::Tensor& input_ids, KVCache* cache = nullptr);
  // forward without the LM head: the final RMSNorm's output (B,T,C) in the compute dtype, what the training
  // loss (lm_head_loss_sum, autotrain/lm_loss.h) takes so that it never holds the whole (B,T,vocab) logits.
  at::Tensor hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
                           KVCache* cache = nullptr);
  const at::Tensor& lm_head() const { return lm_head_; }  // (vocab, C), frozen; the embedding when tied
  KVCache make_cache() const;
  // How many projections are in the gemv_tiles layout (ModelOptions::gemv_tiles).
  int64_t gemv_tiled_projections() const;

  // LoRA A and B of every targeted projection, named as PEFT names them in adapter_model.safetensors, in
  // PEFT's order (layer by layer; q, k, v, o, gate, up, down; A then B). The tensors are the parameters.
  std::vector<std::pair<std::string, at::Tensor>> lora_parameters() const;
  void set_training(bool training);  // LoRA dropout on/off
  bool is_training() const { return training_; }
  // false: every projection computes its frozen base alone, as PEFT's disable_adapter() (DPO's reference model);
  // the LoRA parameters stay as they are.
  void set_adapters_enabled(bool enabled);
  bool adapters_enabled() const { return adapters_enabled_; }
  // Every forward from now on shows `observer` (null: none) its projections' inputs; the observer must outlive that.
  void set_activation_observer(ActivationObserver* observer) { observer_ = observer; }

 private:
  ModelConfig config_;
  ModelOptions options_;
  at::Tensor embed_tokens_;  // (vocab, C), frozen
  at::Tensor final_norm_;    // (C,)
  at::Tensor lm_head_;       // (vocab, C); the embedding itself when tied
  at::Tensor inv_freq_;      // (head_dim / 2,) float32
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
  bool training_ = false;
  bool adapters_enabled_ = true;
  ActivationObserver* observer_ = nullptr;
};

// Causal-LM loss as transformers (ForCausalLMLoss): logits (B,T,V) at t predict labels at t+1; labels -100
// are ignored; the mean over the counted tokens, in float32, on the logits' device.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);

// The elementwise pieces of a decoder layer. Each is a composite of libtorch ops (`*_composite` in
// layer_composites.h: any device, the CPU path, and the reference its fused CUDA kernel is held to), and the plain
// name takes the fused kernel (src/cuda_ops.h) for CUDA tensors it supports unless AUTOTRAIN_FUSED_OPS=0
// (use_fused_ops).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// Whether the pieces above may take their fused kernels for x: a CUDA tensor in a build with the kernels,
// and AUTOTRAIN_FUSED_OPS is not 0 (read once).
bool use_fused_ops(const at::Tensor& x);

}  // namespace autotrain
