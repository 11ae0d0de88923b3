// Token generation from a CausalLM with its KV cache: the prompt is prefilled in one forward, then one
// token per step. Greedy (temperature 0) or sampling with temperature and nucleus (top-p) filtering as
// transformers' TemperatureLogitsWarper + TopPLogitsWarper.
#pragma once

#include <cstdint>
#include <functional>
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

// The new tokens only, ending at the first stop token (included) or after max_new_tokens. `on_token` sees
// each token as it is chosen (for streaming). Runs without autograd and with LoRA dropout off, on the
// model's device; each token is chosen from logits copied to the CPU.
std::vector<int64_t> generate_tokens(CausalLM& model, const std::vector<int64_t>& prompt_ids,
                                     const GenerationOptions& options,
                                     const std::function<void(int64_t)>& on_token = {});

}  // namespace autotrain
