// estimate-cost: what a LoRA / QLoRA run will need before a GPU is rented. A memory model whose terms
// follow what our decoder (src/model.cpp, src/decoder_layer.cpp, src/lora.cpp) keeps alive, a FLOP model
// (frozen weights get no weight gradient: 2N forward + 2N backward, + LoRA, + attention, + one more
// forward with checkpointing), the GPU catalogue (configs/gpus.json), per-GPU verdicts with the changes
// that make a run fit, and the dataset's size counted with the real tokenizer.
// Every term is a function of its own so that it can be checked against hand arithmetic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autotrain/config.h"
#include "autotrain/frozen_linear.h"
#include "autotrain/lm_loss.h"
#include "autotrain/model_config.h"

namespace autotrain {

// Where the run executes: the same code keeps slightly different tensors alive on each.
enum class ExecutionTarget {
  cuda,  // dropout keeps a 1-byte mask; dequantization writes the compute dtype; CUDA context + allocator slack
  cpu,   // dropout keeps a float noise tensor; dequantization goes through float32; no context; heap retention
};

enum class AttentionKernel {
  memory_efficient,  // SDPA flash / memory-efficient: keeps q, k, v, out and a logsumexp, no T x T matrix
  math,              // SDPA math fallback: also keeps the T x T probabilities of every head
};

// Everything besides the architecture that changes memory or time.
struct RunShape {
  int64_t batch_size = 1, block_size = 512, gradient_accumulation = 1;
  int64_t compute_bytes = 2;  // 2: fp16 / bf16, 4: fp32 (mixed_precision none)
  BaseQuantization quantization = BaseQuantization::none;
  FourBitOptions four_bit;
  std::vector<std::string> target_modules;  // q_proj ... down_proj
  int64_t lora_r = 16;
  double lora_dropout = 0.05;
  std::string optimizer = "adamw_torch";  // its state is counted with the LoRA parameters (optimizer.h)
  bool gradient_checkpointing = true;
  AttentionKernel attention = AttentionKernel::memory_efficient;
  ExecutionTarget target = ExecutionTarget::cuda;
  int64_t loss_chunk_bytes = kDefaultLossChunkBytes;  // lm_head_loss_sum's budget (AUTOTRAIN_LOSS_CHUNK_MB)
  bool reference_forward = false;  // DPO: a forward of the base alone (the reference model) for every token too
  // The loss runs the LM head (false for a reward model: its 1-wide score head at one token a sequence costs nothing
  // next to the layers; the LM head's weight is still loaded).
  bool lm_head = true;

  int64_t tokens_per_micro_batch() const { return batch_size * block_size; }
};

// The shape `train` runs for params (effective_block_size, compute_dtype, resolve_target_modules, ...,
// lm_loss_chunk_bytes).
RunShape run_shape(const TrainingParams& params, ExecutionTarget target = ExecutionTarget::cuda);

// ---- memory terms (bytes) -----------------------------------------------------------------------
constexpr int64_t kCudaContextBytes = 500LL << 20;  // CUDA context + cuBLAS workspace, ~500 MiB
constexpr double kAllocatorSlack = 0.10;             // caching-allocator fragmentation, of the per-step memory
// On the CPU: freed heap blocks that glibc keeps resident (under its dynamic mmap threshold, up to 32 MiB), of
// the per-step memory. tools/bench_estimate.sh measured 19-36 % of it (2026-11-26, the chunked loss) over the
// six configurations; 25 % puts them within 10 %.
constexpr double kCpuHeapRetention = 0.25;

// One frozen projection (out, in) as FrozenLinear stores it: none = compute_bytes per weight; int4 = packed
// nibbles ceil(n/2) + fp32 absmax per block of 64 (double quantization: uint8 codes per block + fp32 absmax
// per 256 blocks + a fp32 offset); int8 = 1 byte per weight + a fp32 scale per row. The bias (if any) is in
// the compute dtype.
int64_t estimate_projection_weight_bytes(int64_t out_features, int64_t in_features, bool bias, const RunShape& shape);
// The 7 projections of every layer.
int64_t estimate_base_weight_bytes(const ModelConfig& config, const RunShape& shape);
// Never quantized: the embedding, 2 norms per layer, the final norm and lm_head (counted once when tied),
// in the compute dtype.
int64_t estimate_unquantized_weight_bytes(const ModelConfig& config, const RunShape& shape);

int64_t estimate_lora_parameter_count(const ModelConfig& config, const RunShape& shape);
// LoRA A and B in fp32 + their gradients + the optimizer's state: 16 bytes per parameter with AdamW (exp_avg and
// exp_avg_sq), 12 with Lion, RMSprop or Adagrad, 8 with SGD; Adafactor adds 4 bytes per row and column of each.
int64_t estimate_lora_bytes(const ModelConfig& config, const RunShape& shape);

// Bytes one decoder layer keeps for the backward per token (autograd's saved tensors, all layers requiring
// grad): two RMSNorms (fp32 input + rsqrt), attention (q, repeated k and v, output, logsumexp; math: + the
// T x T probabilities), the SwiGLU MLP (gate output, silu output, up output), LoRA inputs (dropout's mask
// and output or the fp32 input copy) and LoRA's rank-r intermediate.
int64_t estimate_layer_activation_bytes_per_token(const ModelConfig& config, const RunShape& shape);
// All saved activations of a micro-batch: without checkpointing every layer's saved tensors; with
// checkpointing each layer's input only (compute dtype). Plus the final norm's fp32 input and its output (compute
// dtype), which the loss keeps to recompute the logits.
int64_t estimate_activation_bytes(const ModelConfig& config, const RunShape& shape);
// Peak of the loss (lm_head_loss_sum's backward): for one chunk of min(tokens, lm_loss_chunk_rows) tokens the fp32
// log-probabilities, their gradient and the logits' gradient, 3 x 4 bytes x vocab per token; plus d hidden for
// all tokens (compute dtype). A reward model's (RunShape::lm_head false): d hidden alone.
int64_t estimate_logits_bytes(const ModelConfig& config, const RunShape& shape);
// Transients of the backward that do not coexist with the logits' peak: the largest projection
// dequantized (quantized bases), one layer's input gradients (compute dtype: the MLP's 3 intermediates + 2
// hidden-sized), and with checkpointing the recomputed layer's saved activations.
int64_t estimate_backward_working_bytes(const ModelConfig& config, const RunShape& shape);

struct MemoryBreakdown {
  int64_t base_weights = 0, unquantized_weights = 0, lora = 0, activations = 0, logits = 0, backward_working = 0,
          cuda_context = 0, allocator_slack = 0;
  // weights + LoRA + activations + max(logits, backward working) + context + slack: the logits' buffers are
  // freed before the first layer's backward runs, so only the larger of the two is live at the peak.
  int64_t peak() const;
};
MemoryBreakdown estimate_memory(const ModelConfig& config, const RunShape& shape);

// ---- time ---------------------------------------------------------------------------------------
struct FlopsPerToken {
  double forward = 0;      // 2 x frozen linear params (projections + lm_head) + LoRA forward + attention forward
  double backward = 0;     // 2 x frozen params (input gradients only) + 2 x LoRA forward + 2 x attention forward
  double recompute = 0;    // lm_head once more (the chunked loss); checkpointing: the layers' forward once more
                           // (without an LM head in the loss, RunShape::lm_head false: none of lm_head's terms)
  double reference = 0;    // DPO: the reference's forward (frozen weights and attention, no LoRA)
  double total() const { return forward + backward + recompute + reference; }
};
int64_t estimate_frozen_linear_parameter_count(const ModelConfig& config);  // projections + lm_head
FlopsPerToken estimate_flops_per_token(const ModelConfig& config, const RunShape& shape);

// Fraction of a GPU's dense fp16/bf16 tensor TFLOPS the step reaches: 0.45 for NF4, measured with our
// trainer on an H200 (2026-11-26, tools/bench_gpu.sh, block 1024, batch 4, r 16 on all-linear, bf16,
// checkpointing: 0.44 for a 1B-shaped and 0.46 for an 8B-shaped Llama by this file's FLOP count; PEFT +
// bitsandbytes reached 0.29 on the 8B one, which the earlier 0.30 assumed); 0.45 for fp16/bf16 LoRA too (not
// measured: the same kernels without the dequantization, which was ~5% of the 8B step, so at least NF4's;
// NeMo Automodel reports 41% MFU for Llama3-8B LoRA on an H100); 0.20 for LLM.int8 (dequantized by
// libtorch ops, not measured); and half of the fp16 figure for fp32 compute (TF32 tensor cores run at half
// the fp16 rate).
double compute_efficiency(const RunShape& shape);
// Bytes moved per micro-batch to dequantize the frozen projections (read the packed weight, write and read
// the compute-dtype copy) in the forward, the backward and the recompute; 0 for unquantized bases.
double estimate_dequantize_traffic_bytes(const ModelConfig& config, const RunShape& shape);

struct GpuSpec {
  std::string name;
  double memory_gb = 0, bandwidth_gbps = 0, fp16_tflops = 0;
  bool bf16 = true;
  std::optional<double> price_usd_per_hour;
  std::string source;
  // Decimal GB, as the catalogue lists them: 24 GB = 22.35 GiB, a little under what a 24 GB card reports
  // free (L4: 22.49 GiB), so a "fits" errs on the safe side.
  int64_t memory_bytes() const { return static_cast<int64_t>(memory_gb * 1e9); }
};

// configs/gpus.json; throws Error naming the file and entry that is malformed.
std::vector<GpuSpec> load_gpu_catalogue(const std::string& path);
// $AUTOTRAIN_GPU_CATALOGUE, else configs/gpus.json next to the binary's build or install folder.
std::string default_gpu_catalogue_path();
// The GPUs a name selects: an exact name, or every GPU whose name starts with it ("H100", "A100"), ignoring
// case. Throws a config Error listing the known names for a name that selects none.
std::vector<GpuSpec> select_gpus(const std::vector<GpuSpec>& catalogue, const std::string& name);

// ---- the dataset as training sees it -------------------------------------------------------------
struct DatasetSize {
  int64_t tokens = 0, block_size = 0, blocks = 0, micro_batches_per_epoch = 0, optimizer_steps_per_epoch = 0,
          epochs = 1;
  int64_t tokens_per_epoch() const;  // whole blocks only: the remainder is dropped
  int64_t total_tokens() const { return tokens_per_epoch() * epochs; }
  int64_t total_micro_batches() const { return micro_batches_per_epoch * epochs; }
};
// Blocks, micro-batches and optimizer steps as `train` counts them (trainer.h). Throws Error naming
// `source` when the tokens make no block.
DatasetSize dataset_size(int64_t tokens, const RunShape& shape, int64_t epochs, const std::string& source);

// ---- per-GPU verdicts ----------------------------------------------------------------------------
struct TimeEstimate {
  double seconds_per_micro_batch = 0;
  double hours = 0;      // wall-clock with gpu_count data-parallel GPUs
  double gpu_hours = 0;  // hours x gpu_count
  std::optional<double> dollars;
};
// Per micro-batch: tokens x FLOPs per token / (TFLOPS x efficiency) + dequantization traffic / bandwidth.
TimeEstimate estimate_time(const ModelConfig& config, const RunShape& shape, const DatasetSize& data, const GpuSpec& gpu,
                           int gpu_count, std::optional<double> price);

struct Remedy {
  std::string change;  // "gradient checkpointing on", "batch_size 1 x gradient_accumulation 20", ...
  RunShape shape;
  int64_t peak_bytes = 0;
  std::string gpu;  // the GPU the remedy runs on (another one for "a bigger GPU")
  TimeEstimate time;
};

struct GpuVerdict {
  GpuSpec gpu;
  int64_t peak_bytes = 0;
  bool fits = false;
  int64_t margin_bytes = 0;  // capacity - peak (negative when it does not fit)
  TimeEstimate time;
  std::vector<std::string> notes;  // e.g. "no bf16 on T4"
  std::vector<Remedy> remedies;    // when it does not fit: changes that make it fit, cheapest first
};

GpuVerdict judge_gpu(const ModelConfig& config, const RunShape& shape, const DatasetSize& data, const GpuSpec& gpu,
                     const std::vector<GpuSpec>& catalogue, int gpu_count, std::optional<double> price);

// The full report of estimate-cost.
struct CostEstimate {
  std::string model_type;
  ModelConfig config;
  RunShape shape;
  DatasetSize data;
  int gpu_count = 1;
  MemoryBreakdown memory;
  FlopsPerToken flops;
  std::vector<GpuVerdict> verdicts;
  std::optional<std::string> cheapest_fit;  // the GPU name with the lowest dollars among those that fit
};

CostEstimate estimate_cost(const ModelConfig& config, const RunShape& shape, const DatasetSize& data,
                           const std::vector<GpuSpec>& gpus, const std::vector<GpuSpec>& catalogue, int gpu_count,
                           std::optional<double> price);

std::string format_bytes(int64_t bytes);  // "20.73 GiB", "512.0 MiB"
// One line for a run that ran out of memory: the estimate's breakdown for `shape` and up to three changes
// that lower the peak by a tenth or more (a smaller micro-batch with more accumulation, checkpointing, a
// shorter block, int4), each with its new peak.
std::string out_of_memory_advice(const ModelConfig& config, const RunShape& shape);
std::string render_cost_estimate(const CostEstimate& estimate);
nlohmann::json cost_estimate_json(const CostEstimate& estimate);

}  // namespace autotrain
