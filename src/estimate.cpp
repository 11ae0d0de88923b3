#include "autotrain/estimate.h"

#include <algorithm>
#include <cmath>

#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/optimizer.h"
#include "autotrain/trainer.h"

namespace autotrain {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Which projections read the same input tensor: q/k/v read input_layernorm's output, gate/up the
// post-attention norm's; o_proj and down_proj read tensors of their own.
std::string input_group(const std::string& name) {
  if (name == "q_proj" || name == "k_proj" || name == "v_proj") return "attention_input";
  if (name == "gate_proj" || name == "up_proj") return "mlp_input";
  return name;
}

}  // namespace

RunShape run_shape(const TrainingParams& params, ExecutionTarget target) {
  RunShape shape;
  // A DPO / ORPO / reward micro-batch holds each pair's chosen and rejected sequences; DPO's reference scores them too.
  const bool pairs = trains_on_pairs(params.trainer);
  shape.batch_size = pairs ? 2 * params.batch_size : params.batch_size;
  shape.reference_forward = params.trainer == "dpo";
  shape.lm_head = params.trainer != "reward";
  shape.block_size = effective_block_size(params);
  shape.gradient_accumulation = params.gradient_accumulation;
  shape.compute_bytes = compute_dtype(params) == at::kFloat ? 4 : 2;
  const ModelOptions options = finetune_model_options(params);
  shape.quantization = options.quantization;
  shape.four_bit = options.four_bit;
  shape.target_modules = options.lora_target_modules;
  shape.lora_r = options.lora.r;
  shape.lora_dropout = options.lora.dropout;
  shape.optimizer = params.optimizer;
  shape.gradient_checkpointing = options.gradient_checkpointing;
  shape.target = target;
  shape.loss_chunk_bytes = lm_loss_chunk_bytes();
  return shape;
}

// ---- memory -------------------------------------------------------------------------------------

int64_t estimate_projection_weight_bytes(int64_t out_features, int64_t in_features, bool bias, const RunShape& shape) {
  const int64_t n = out_features * in_features;
  const int64_t bias_bytes = bias ? out_features * shape.compute_bytes : 0;
  switch (shape.quantization) {
    case BaseQuantization::none:
      return n * shape.compute_bytes + bias_bytes;
    case BaseQuantization::int4: {
      const int64_t blocks = ceil_div(n, shape.four_bit.blocksize);
      // Quantized4bit::bytes(): packed nibbles + absmax (fp32, or uint8 codes + fp32 per 256 + offset).
      const int64_t absmax = shape.four_bit.double_quantize ? blocks + 4 * ceil_div(blocks, 256) + 4 : 4 * blocks;
      return ceil_div(n, 2) + absmax + bias_bytes;
    }
    case BaseQuantization::int8:
      return n + 4 * out_features + bias_bytes;
  }
  return 0;
}

int64_t estimate_base_weight_bytes(const ModelConfig& config, const RunShape& shape) {
  int64_t per_layer = 0;
  for (const std::string& name : linear_module_names()) {
    auto [out, in] = projection_shape(config, name);
    per_layer += estimate_projection_weight_bytes(out, in, projection_has_bias(config, name), shape);
  }
  return per_layer * config.num_hidden_layers;
}

int64_t estimate_unquantized_weight_bytes(const ModelConfig& config, const RunShape& shape) {
  const int64_t C = config.hidden_size, V = config.vocab_size;
  const int64_t matrices = config.tie_word_embeddings ? 1 : 2;
  const int64_t qk_norms = config.qk_norm ? 2 * config.head_dim : 0;  // Qwen3's q_norm, k_norm
  return shape.compute_bytes * (matrices * V * C + config.num_hidden_layers * (2 * C + qk_norms) + C);
}

int64_t estimate_lora_parameter_count(const ModelConfig& config, const RunShape& shape) {
  int64_t per_layer = 0;
  for (const std::string& name : shape.target_modules) {
    auto [out, in] = projection_shape(config, name);
    per_layer += shape.lora_r * (in + out);
  }
  return per_layer * config.num_hidden_layers;
}

int64_t estimate_lora_bytes(const ModelConfig& config, const RunShape& shape) {
  int64_t state_per_layer = 0;  // of A (r x in) and B (out x r)
  for (const std::string& name : shape.target_modules) {
    auto [out, in] = projection_shape(config, name);
    state_per_layer += optimizer_state_bytes(shape.optimizer, shape.lora_r, in) +
                       optimizer_state_bytes(shape.optimizer, out, shape.lora_r);
  }
  // fp32 parameters and their gradients, and the optimizer's state
  return 8 * estimate_lora_parameter_count(config, shape) + state_per_layer * config.num_hidden_layers;
}

int64_t estimate_layer_activation_bytes_per_token(const ModelConfig& config, const RunShape& shape) {
  const int64_t s = shape.compute_bytes, C = config.hidden_size, I = config.intermediate_size;
  const int64_t Q = config.q_size(), H = config.num_attention_heads, T = shape.block_size;
  // rms_norm: pow and mul keep the fp32 input (a copy for fp16/bf16, the input itself for fp32) and
  // rsqrt's (B,T,1) result; weight * x keeps only the weight.
  int64_t norms = 2 * (4 * C + 4);
  // Qwen3's q_norm / k_norm: the same per head of q (H heads, q_size wide) and of k (KV heads, kv_size wide).
  if (config.qk_norm) norms += 4 * (Q + config.kv_size()) + 4 * (H + config.num_key_value_heads);
  // SDPA: repeat_kv makes k and v H heads wide, so q, k, v and the output are all q_size wide. The
  // rotary products keep only cos/sin (shared by every layer).
  const int64_t attention = shape.attention == AttentionKernel::memory_efficient
                                ? 4 * s * Q + 4 * H         // q, k, v, out + fp32 logsumexp per head
                                : 3 * s * Q + s * H * T;  // scaled q and k, v + the softmax probabilities
  // SwiGLU: silu keeps its input (gate output), the product keeps silu's output and up's output.
  const int64_t mlp = 3 * s * I;
  // LoRA: x.to(fp32) -> dropout -> A -> B. A's output (r wide, fp32) is kept by B's matmul. With dropout the
  // mask (CUDA: 1-byte mask; CPU: float noise tensor) and dropout's fp32 output are kept per module; without,
  // A keeps its fp32 input: a copy per module for fp16/bf16, or the (shared) input tensor itself for fp32.
  int64_t lora = 0;
  std::vector<std::string> shared_inputs_counted;
  for (const std::string& name : shape.target_modules) {
    const int64_t in = projection_shape(config, name).second;
    lora += 4 * shape.lora_r;
    if (shape.lora_dropout > 0) {
      lora += (shape.target == ExecutionTarget::cuda ? 1 : 4) * in + 4 * in;
    } else if (s != 4) {
      lora += 4 * in;
    } else if (std::find(shared_inputs_counted.begin(), shared_inputs_counted.end(), input_group(name)) ==
               shared_inputs_counted.end()) {
      shared_inputs_counted.push_back(input_group(name));
      lora += 4 * in;
    }
  }
  return norms + attention + mlp + lora;
}

int64_t estimate_activation_bytes(const ModelConfig& config, const RunShape& shape) {
  const int64_t tokens = shape.tokens_per_micro_batch(), C = config.hidden_size;
  const int64_t final_norm = 4 * C + 4 + shape.compute_bytes * C;  // fp32 input and rsqrt; the output (the loss's)
  const int64_t per_layer = shape.gradient_checkpointing ? shape.compute_bytes * C  // the layer's input only
                                                         : estimate_layer_activation_bytes_per_token(config, shape);
  return tokens * (config.num_hidden_layers * per_layer + final_norm);
}

int64_t estimate_logits_bytes(const ModelConfig& config, const RunShape& shape) {
  // lm_head_loss_sum's backward holds a chunk's log-probabilities, their gradient and the logits' gradient at once
  // (fp32), then frees them before the next chunk; d hidden is filled chunk by chunk. Measured on the CPU
  // (tools/bench_estimate.sh's model, 2048 tokens of vocab 32000): the peak moved by 3.0 such buffers between
  // chunks of 32 and 250 MiB. The unchunked loss was modelled with a fourth buffer, which stood in for glibc's
  // heap keeping freed blocks resident (with MALLOC_MMAP_THRESHOLD_ fixed, its peak matched three).
  // A reward model's loss holds d hidden only (its score head reads one position a sequence).
  const int64_t tokens = shape.tokens_per_micro_batch();
  const int64_t rows = std::min(tokens, lm_loss_chunk_rows(config.vocab_size, shape.loss_chunk_bytes));
  return (shape.lm_head ? 3 * 4 * config.vocab_size * rows : 0) + shape.compute_bytes * config.hidden_size * tokens;
}

int64_t estimate_backward_working_bytes(const ModelConfig& config, const RunShape& shape) {
  const int64_t s = shape.compute_bytes, tokens = shape.tokens_per_micro_batch();
  int64_t largest = 0;
  for (const std::string& name : linear_module_names()) {
    auto [out, in] = projection_shape(config, name);
    largest = std::max(largest, out * in);
  }
  int64_t dequantized = 0;
  if (shape.quantization != BaseQuantization::none) {
    if (shape.target == ExecutionTarget::cuda) {
      dequantized = s * largest;  // the kernel writes the compute dtype directly
    } else {
      // dequantize_4bit: fp32 values, then a cast; dequantize_int8_rowwise: fp32 codes x scale, then a cast.
      const int64_t fp32_buffers = shape.quantization == BaseQuantization::int4 ? 1 : 2;
      dequantized = std::max<int64_t>(4 * fp32_buffers, 4 + (s == 4 ? 0 : s)) * largest;
    }
  }
  const int64_t layer_gradients = s * (3 * config.intermediate_size + 2 * config.hidden_size) * tokens;
  const int64_t recomputed =
      shape.gradient_checkpointing ? estimate_layer_activation_bytes_per_token(config, shape) * tokens : 0;
  return dequantized + layer_gradients + recomputed;
}

int64_t MemoryBreakdown::peak() const {
  return base_weights + unquantized_weights + lora + activations + std::max(logits, backward_working) + cuda_context +
         allocator_slack;
}

MemoryBreakdown estimate_memory(const ModelConfig& config, const RunShape& shape) {
  MemoryBreakdown m;
  m.base_weights = estimate_base_weight_bytes(config, shape);
  m.unquantized_weights = estimate_unquantized_weight_bytes(config, shape);
  m.lora = estimate_lora_bytes(config, shape);
  m.activations = estimate_activation_bytes(config, shape);
  m.logits = estimate_logits_bytes(config, shape);
  m.backward_working = estimate_backward_working_bytes(config, shape);
  const double per_step = static_cast<double>(m.activations + std::max(m.logits, m.backward_working));
  if (shape.target == ExecutionTarget::cuda) {
    m.cuda_context = kCudaContextBytes;
    m.allocator_slack = static_cast<int64_t>(kAllocatorSlack * per_step);
  } else {
    m.allocator_slack = static_cast<int64_t>(kCpuHeapRetention * per_step);
  }
  return m;
}

// ---- time ---------------------------------------------------------------------------------------

int64_t estimate_frozen_linear_parameter_count(const ModelConfig& config) {
  int64_t per_layer = 0;
  for (const std::string& name : linear_module_names()) {
    auto [out, in] = projection_shape(config, name);
    per_layer += out * in;
  }
  return per_layer * config.num_hidden_layers + config.vocab_size * config.hidden_size;
}

FlopsPerToken estimate_flops_per_token(const ModelConfig& config, const RunShape& shape) {
  const double frozen = static_cast<double>(estimate_frozen_linear_parameter_count(config));
  const double lm_head = static_cast<double>(config.vocab_size * config.hidden_size);
  const double lora_forward = 2.0 * static_cast<double>(estimate_lora_parameter_count(config, shape));
  // QK^T and AV: 2 x T x q_size multiply-adds each per token and layer (not halved for the causal mask).
  const double attention_forward = 4.0 * static_cast<double>(shape.block_size * config.q_size() *
                                                             config.num_hidden_layers);
  const double head = shape.lm_head ? lm_head : 0;  // a reward model's loss never runs the LM head
  FlopsPerToken f;
  f.forward = 2 * (frozen - lm_head + head) + lora_forward + attention_forward;
  // Frozen weights: input gradients only (2N); LoRA: input and weight gradients (2 x forward); attention 2x.
  f.backward = 2 * (frozen - lm_head + head) + 2 * lora_forward + 2 * attention_forward;
  // The loss computes the logits in the forward and again in the backward (lm_head_loss_sum).
  f.recompute = 2 * head;
  if (shape.gradient_checkpointing) f.recompute += 2 * (frozen - lm_head) + lora_forward + attention_forward;
  if (shape.reference_forward) f.reference = 2 * frozen + attention_forward;
  return f;
}

double compute_efficiency(const RunShape& shape) {
  double efficiency = 0.45;  // none and int4 (see the header for the measurements)
  if (shape.quantization == BaseQuantization::int8) efficiency = 0.20;
  return shape.compute_bytes == 4 ? efficiency / 2 : efficiency;
}

double estimate_dequantize_traffic_bytes(const ModelConfig& config, const RunShape& shape) {
  if (shape.quantization == BaseQuantization::none) return 0;
  double per_pass = 0;
  for (const std::string& name : linear_module_names()) {
    auto [out, in] = projection_shape(config, name);
    per_pass += static_cast<double>(estimate_projection_weight_bytes(out, in, false, shape)) +
                2.0 * static_cast<double>(shape.compute_bytes * out * in);  // write, then the matmul reads
  }
  const double passes = shape.gradient_checkpointing ? 3 : 2;
  return passes * per_pass * static_cast<double>(config.num_hidden_layers);
}

// ---- the dataset ----------------------------------------------------------------------------------

int64_t DatasetSize::tokens_per_epoch() const { return blocks * block_size; }

DatasetSize dataset_size(int64_t tokens, const RunShape& shape, int64_t epochs, const std::string& source) {
  DatasetSize d;
  d.tokens = tokens;
  d.block_size = shape.block_size;
  d.blocks = tokens / shape.block_size;
  if (d.blocks == 0)
    throw Error(source + ": " + std::to_string(tokens) + " tokens make no block of block_size " +
                std::to_string(shape.block_size) + "; lower block_size or add data");
  d.micro_batches_per_epoch = micro_batches_per_epoch(d.blocks, shape.batch_size);
  d.optimizer_steps_per_epoch = optimizer_steps_per_epoch(d.blocks, shape.batch_size, shape.gradient_accumulation);
  d.epochs = epochs;
  return d;
}

// ---- per GPU ------------------------------------------------------------------------------------

TimeEstimate estimate_time(const ModelConfig& config, const RunShape& shape, const DatasetSize& data, const GpuSpec& gpu,
                           int gpu_count, std::optional<double> price) {
  const double flops_per_second = gpu.fp16_tflops * 1e12 * compute_efficiency(shape);
  const double flops = estimate_flops_per_token(config, shape).total();
  const double dequantize_seconds = estimate_dequantize_traffic_bytes(config, shape) / (gpu.bandwidth_gbps * 1e9);
  TimeEstimate t;
  t.seconds_per_micro_batch =
      static_cast<double>(shape.tokens_per_micro_batch()) * flops / flops_per_second + dequantize_seconds;
  const double seconds = static_cast<double>(data.total_tokens()) * flops / flops_per_second +
                         static_cast<double>(data.total_micro_batches()) * dequantize_seconds;
  t.gpu_hours = seconds / 3600.0;
  t.hours = t.gpu_hours / gpu_count;
  const std::optional<double> per_hour = price ? price : gpu.price_usd_per_hour;
  if (per_hour) t.dollars = t.gpu_hours * *per_hour;
  return t;
}

}  // namespace autotrain
