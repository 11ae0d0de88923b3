#include "autotrain/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <memory>

#include "autotrain/error.h"
#include "autotrain/merge.h"
#include "autotrain/profiling.h"
#include "tokenizer_parts.h"

namespace autotrain {

namespace {

// logits (V,) float32 on the CPU -> the next token, sampled (temperature > 0).
int64_t sample_token(const at::Tensor& logits, const GenerationOptions& options, at::Generator& generator) {
  at::Tensor scores = logits / options.temperature;
  if (options.top_p < 1.0) {
    // As TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability stays within
    // 1 - top_p, always keep the most likely one.
    auto [sorted, order] = scores.sort(/*dim=*/-1, /*descending=*/false);
    at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    at::Tensor remove = cumulative <= (1.0 - options.top_p);
    remove[-1] = false;
    sorted = sorted.masked_fill(remove, -std::numeric_limits<float>::infinity());
    scores = scores.scatter(0, order, sorted);
  }
  return at::multinomial(scores.softmax(-1), 1, /*replacement=*/false, generator).item<int64_t>();
}

}  // namespace

at::ScalarType generation_dtype(const std::string& choice, at::Device device, at::ScalarType checkpoint_dtype,
                                bool bf16_native) {
  if (choice != "auto") return parse_dtype_name(choice);
  if (!device.is_cuda()) return at::kFloat;
  if (checkpoint_dtype == at::kHalf) return at::kHalf;
  return bf16_native ? at::kBFloat16 : at::kHalf;
}

std::vector<int64_t> generate_tokens(CausalLM& model, const std::vector<int64_t>& prompt_ids,
                                     const GenerationOptions& options, const std::function<void(int64_t)>& on_token) {
  if (prompt_ids.empty()) throw Error("generate: the prompt has no tokens");
  if (options.temperature < 0) throw config_error("generate: temperature must be >= 0 (0 = greedy)");
  if (!(options.top_p > 0 && options.top_p <= 1)) throw config_error("generate: top_p must be in (0, 1]");
  const bool was_training = model.is_training();
  model.set_training(false);
  at::NoGradGuard no_grad;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);

  KVCache cache = model.make_cache();
  // Room for the prompt and up to 512 new tokens at first (a large --max-new-tokens that ends at eos early would
  // hold memory for nothing); the cache grows by half beyond.
  cache.reserve(static_cast<int64_t>(prompt_ids.size()) + std::min<int64_t>(options.max_new_tokens, 512));
  std::vector<int64_t> tokens;
  at::Tensor input = at::tensor(prompt_ids, at::kLong).view({1, -1});
  // AUTOTRAIN_PROFILE: the new tokens FIRST-LAST (AUTOTRAIN_PROFILE_STEPS; from 1, the prompt's pass in the first).
  const std::unique_ptr<StepProfiler> profiler = StepProfiler::from_environment();
  while (static_cast<int64_t>(tokens.size()) < options.max_new_tokens) {
    const int64_t step = static_cast<int64_t>(tokens.size()) + 1;
    if (profiler) profiler->before_step(step);
    at::Tensor logits = model.next_token_logits(input, &cache);  // (1, V) on the model's device
    // Greedy: the argmax where the logits are (the first of equal maxima on any device), one number copied back.
    // Sampling on the CPU: the sampler's generator is a CPU one, so a GPU run samples as a CPU run does.
    int64_t token = options.temperature == 0 ? logits[0].argmax().item<int64_t>()
                                             : sample_token(logits[0].to(at::kCPU), options, generator);
    if (profiler) profiler->after_step(step);
    tokens.push_back(token);
    if (on_token) on_token(token);
    const auto& stops = options.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) break;
    input = at::full({1, 1}, token, at::kLong);
  }
  model.set_training(was_training);
  return tokens;
}

std::vector<int64_t> generation_config_eos_ids(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  std::vector<int64_t> ids;
  if (!std::filesystem::exists(path)) return ids;
  const nlohmann::json config = tokenization::read_json_file(path);
  const auto eos = config.is_object() ? config.find("eos_token_id") : config.end();
  if (!config.is_object() || eos == config.end() || eos->is_null()) return ids;
  for (const auto& id : eos->is_array() ? *eos : nlohmann::json::array({*eos})) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw Error(path + ": \"eos_token_id\" must be a token id or a list of them, not " + eos->dump());
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

}  // namespace autotrain
