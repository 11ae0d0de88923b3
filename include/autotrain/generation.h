// Token generation from a CausalLM with its KV cache: the prompt is prefilled in one forward, then one
// token per step. Greedy (temperature 0) or sampling with temperature and nucleus (top-p) filtering as
// transformers' TemperatureLogitsWarper + TopPLogitsWarper.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autotrain/model.h"

namespace autotrain {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0;  // 0 = greedy (argmax)
  double top_p = 1.0;      // keep the smallest set of tokens whose probability reaches top_p
  uint64_t seed = 42;      // of the sampling generator (its own: the global torch RNG is left alone)
  std::vector<int64_t> stop_token_ids;
};

// generate's --dtype: fp32 / fp16 / bf16 as named, or for "auto" fp32 on the CPU (the reference path, and what
// the CPU multiplies fastest) and on a GPU the checkpoint's dtype when it is fp16 or bf16, else bf16, with fp16 in
// place of bf16 where the GPU has no native bf16 (`bf16_native`, before Ampere). So a 16-bit checkpoint runs in
// its own dtype on a GPU, as transformers' dtype="auto" loads it, and an int4 base reaches the tensor-core GEMV
// (fp16 / bf16 only). Error (exit 2) for another name.
at::ScalarType generation_dtype(const std::string& choice, at::Device device, at::ScalarType checkpoint_dtype,
                                bool bf16_native);

// The eos ids of a model folder's generation_config.json ("eos_token_id": an int or a list), which transformers'
// generate() stops at: chat models list their end-of-turn token there (Gemma 2's <end_of_turn>, Llama 3's
// <|eot_id|>, Qwen2's <|im_end|>). Empty without the file; Error naming it when it is malformed.
std::vector<int64_t> generation_config_eos_ids(const std::string& model_dir);

// The new tokens only, ending at the first stop token (included) or after max_new_tokens. `on_token` sees
// each token as it is chosen (for streaming). Runs without autograd and with LoRA dropout off, on the
// model's device; greedy takes the argmax there, sampling draws from logits copied to the CPU.
std::vector<int64_t> generate_tokens(CausalLM& model, const std::vector<int64_t>& prompt_ids,
                                     const GenerationOptions& options,
                                     const std::function<void(int64_t)>& on_token = {});

}  // namespace autotrain
