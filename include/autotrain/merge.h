// Merging a PEFT LoRA adapter into its base model: W' = W + scaling * B A on every adapted linear layer,
// written as a Hugging Face model folder (sharded safetensors + config + tokenizer) that transformers,
// vLLM and llama.cpp's converter load as-is.
//
// The base weights are read from disk (mmap), never through NF4: merging into a dequantized 4-bit weight
// would bake the quantization error into the merged model. The merge is computed in fp32 and cast once.
// Memory stays near one tensor: every shard's header is planned from dtypes and shapes alone, so each output
// tensor is merged (or copied byte for byte), written and freed before the next, and the base pages it was
// read from are evicted once it is written.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace autotrain {

struct AdapterConfig;
struct ModelConfig;
class Checkpoint;
class SafetensorsFile;

struct MergeOptions {
  std::string base_dir, adapter_dir, out_dir;
  std::optional<at::ScalarType> dtype;  // merged weights' dtype; default: the base config's dtype
  uint64_t max_shard_bytes = 5'000'000'000;
  bool force = false;  // replace an existing, non-empty out_dir
};

struct MergeSummary {
  int64_t merged_weights = 0;  // linear weights that received B A
  int64_t tensors = 0;         // tensors written in all
  uint64_t bytes = 0;          // tensor bytes written
  std::vector<std::string> files;  // weight files written (index last), inside out_dir
  bool reward_model = false;       // a SEQ_CLS adapter: *ForSequenceClassification, score.weight for lm_head
};

// Validates base and adapter completely (nothing is written when they do not fit together), then writes
// out_dir through `out_dir.partial-<pid>` and a rename. Throws Error naming the file / tensor at fault.
MergeSummary merge_adapter(const MergeOptions& options);

// W + scaling * (B @ A), computed in fp32 from W (out, in), A (r, in), B (out, r), then cast to `dtype`.
// The order of operations is PEFT's (get_delta_weight: (B @ A) * scaling, then added to W).
at::Tensor merge_lora_weight(const at::Tensor& weight, const at::Tensor& lora_A, const at::Tensor& lora_B,
                             double scaling, at::ScalarType dtype);

// The LoRA matrices (their names in adapter_model.safetensors) of one adapted base weight.
struct LoraPair {
  std::string a, b;
};
// Every adapted base weight (its checkpoint name) -> its LoRA pair, the adapter checked against the base: PEFT names
// of this decoder, target_modules, layers, both halves present, shapes of rank r that fit the base weight. Throws
// Error naming the file and the tensor at fault (what merge-adapter and export-gguf --adapter refuse alike).
std::map<std::string, LoraPair> plan_adapter_pairs(const SafetensorsFile& adapter_file, const AdapterConfig& adapter,
                                                   const ModelConfig& config, const Checkpoint& base);
// Refuses an adapter whose recorded base (base_model_name_or_path, a folder or a cached Hub id) has another
// model_type or hidden_size than `base`; notes another vocabulary size. Silent when the recorded base is not here.
void check_adapter_base(const AdapterConfig& adapter, const std::string& adapter_config_path, const ModelConfig& base);

// "5GB", "500MB", "200KB", "1GiB", "123" (bytes), as transformers' max_shard_size; throws a config error.
uint64_t parse_byte_size(const std::string& text);
// "fp16" / "bf16" / "fp32" (also "float16", "bfloat16", "float32"); throws a config error for another.
at::ScalarType parse_dtype_name(const std::string& text);

}  // namespace autotrain
