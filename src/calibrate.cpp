#include "autotrain/calibrate.h"

#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
#include "autotrain/preference.h"
#include "autotrain/progress.h"
#include "autotrain/tokenizer.h"
#include "autotrain/trainer.h"

namespace autotrain {
namespace fs = std::filesystem;

namespace {

// Linux: writing "5" to clear_refs resets the peak resident set size (VmHWM) to the current one.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:   1234 kB"
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Rates of the two kernels a step spends its time in, on this machine: the largest projection's matmul
// (rows = one micro-batch, at most 512) in the compute dtype, and dequantizing that projection.
void measure_rates(const ModelConfig& config, const RunShape& shape, const ModelOptions& options, Calibration& c) {
  at::NoGradGuard no_grad;
  auto [out, in] = projection_shape(config, "gate_proj");
  const at::ScalarType dtype = options.dtype;
  const int64_t rows = std::min<int64_t>(shape.tokens_per_micro_batch(), 512);
  at::Tensor x = at::randn({rows, in}).to(dtype), w = at::randn({out, in}).mul_(0.02).to(dtype);
  at::linear(x, w);  // warm-up
  const int repeats = 3;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) at::linear(x, w);
  c.matmul_flops_per_second = repeats * 2.0 * double(rows * in * out) / seconds_since(start);
  if (options.quantization == BaseQuantization::none) return;
  FrozenLinear frozen(w, {}, options.quantization, dtype, options.four_bit);
  frozen.weight(dtype);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) frozen.weight(dtype);
  c.dequantize_weights_per_second = repeats * double(out * in) / seconds_since(start);
}

// The micro-batches of each optimizer step from the first, as train() cuts epochs of `examples` into windows.
std::vector<int64_t> step_micro_batches(int64_t examples, int64_t batch_size, int64_t accumulation, int64_t steps) {
  const int64_t micro = micro_batches_per_epoch(examples, batch_size);
  std::vector<int64_t> work;
  int64_t m = 0;
  for (int64_t step = 0; step < steps; ++step) {
    work.push_back(std::min(accumulation, micro - m));
    m = m + work.back() >= micro ? 0 : m + work.back();
  }
  return work;
}

struct TempFolder {
  std::string path;
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "autotrain-calibrate-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw Error("estimate-cost --calibrate: cannot create a temporary folder");
    path = pattern;
  }
  ~TempFolder() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

Calibration calibrate_on_this_machine(const TrainingParams& params, int64_t steps, const std::string& cache_dir) {
  Calibration c;
  c.timed_steps = steps;
  at::manual_seed(static_cast<uint64_t>(params.seed));
  const RunShape shape = run_shape(params, ExecutionTarget::cpu);
  auto tokenizer = Tokenizer::load(params.model);
  TrainingParams run = params;
  run.valid_split = std::nullopt;
  // What train() would train on: blocks of the packed text, or preference pairs (a micro-batch of batch_size pairs).
  const bool pairs = trains_on_pairs(params.trainer);
  std::optional<TrainingData> data;
  std::optional<PreferenceData> pair_data;
  int64_t examples = 0;
  if (pairs) {
    pair_data = read_preference_data(run, *tokenizer, shape.block_size);
    pair_data->fingerprint = "calibration";
    examples = static_cast<int64_t>(pair_data->train.size());
    if (examples == 0) throw Error(params.data_path + ": no preference pair to train on");
  } else {
    data.emplace(TrainingData{tokenize_split(params, *tokenizer, params.train_split, cache_dir), std::nullopt,
                              shape.block_size, "calibration"});
    examples = dataset_size(data->train.size(), shape, 1, params.data_path).blocks;
  }
  const int64_t steps_per_epoch = optimizer_steps_per_epoch(examples, params.batch_size, params.gradient_accumulation);

  TempFolder folder;
  run.project_name = folder.path + "/run";
  run.epochs = std::max<int64_t>(params.epochs, (c.warmup_steps + steps + steps_per_epoch - 1) / steps_per_epoch);

  // The kernels' rates first: their one-time buffers (BLAS packing, thread pools) join the baseline, as the
  // CUDA context stays out of the comparison on a GPU.
  const ModelOptions options = finetune_model_options(params);
  measure_rates(load_model_config(params.model), shape, options, c);
  c.baseline_rss_bytes = resident_memory_bytes();
  CausalLM model(params.model, options);
  c.loaded_rss_bytes = resident_memory_bytes();
  c.predicted = estimate_memory(model.config(), shape);
  c.peak_is_steps_only = reset_peak_rss();

  const AdapterConfig adapter = finetune_adapter_config(params, options);
  TrainableModel trainable = trainable_model(model, adapter);
  if (params.trainer == "reward") attach_reward_head(trainable, model, adapter, new_score_head(model));
  TrainerOptions trainer_options{run, 0, "", false, c.warmup_steps + steps};
  if (pairs) {
    train_preference(trainable, *pair_data, trainer_options);
  } else {
    train(trainable, *data, trainer_options);
  }
  c.peak_rss_bytes = peak_rss_bytes();

  // metrics.jsonl: each step's end since the loop started, and the tokens per second so far (the tokens the steps
  // computed: a pair's sequences without their padding).
  std::vector<double> ended, tokens;
  for (const auto& record : read_metrics(run.project_name + "/metrics.jsonl")) {
    if (!record.contains("elapsed_seconds")) continue;
    ended.push_back(record["elapsed_seconds"].get<double>());
    tokens.push_back(record["tokens_per_second"].get<double>() * ended.back());
    if (static_cast<int64_t>(ended.size()) == c.warmup_steps + steps) break;
  }
  if (static_cast<int64_t>(ended.size()) <= c.warmup_steps) throw Error("estimate-cost --calibrate: no step was timed");
  c.timed_steps = static_cast<int64_t>(ended.size()) - c.warmup_steps;
  c.measured_seconds = ended.back() - ended[c.warmup_steps - 1];
  c.timed_tokens = std::llround(tokens.back() - tokens[c.warmup_steps - 1]);
  const std::vector<int64_t> micro_batches =
      step_micro_batches(examples, params.batch_size, params.gradient_accumulation, c.warmup_steps + c.timed_steps);
  for (int64_t k = c.warmup_steps; k < c.warmup_steps + c.timed_steps; ++k) c.timed_micro_batches += micro_batches[k];

  const double flops = estimate_flops_per_token(model.config(), shape).total();
  c.predicted_seconds = double(c.timed_tokens) * flops / c.matmul_flops_per_second;
  if (c.dequantize_weights_per_second > 0) {
    const double weights = double(estimate_frozen_linear_parameter_count(model.config()) -
                                  model.config().vocab_size * model.config().hidden_size);
    // Each micro-batch dequantizes every weight for the forward, the checkpointed forward again and the backward;
    // DPO's reference forward once more.
    const double passes = (shape.gradient_checkpointing ? 3 : 2) + (shape.reference_forward ? 1 : 0);
    c.predicted_seconds += double(c.timed_micro_batches) * passes * weights / c.dequantize_weights_per_second;
  }
  return c;
}

namespace {
std::string percent_off(double measured, double predicted) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%+.1f%%", 100.0 * (predicted - measured) / measured);
  return buffer;
}
}  // namespace

std::string render_calibration(const Calibration& c) {
  std::ostringstream out;
  char line[256];
  out << "\ncalibration on this machine (CPU; " << c.warmup_steps << " warm-up + " << c.timed_steps
      << " optimizer steps of the real run, " << c.timed_tokens << " tokens timed):\n";
  std::snprintf(line, sizeof line, "  measured rates: matmul %.1f GFLOP/s", c.matmul_flops_per_second / 1e9);
  out << line;
  if (c.dequantize_weights_per_second > 0) {
    std::snprintf(line, sizeof line, ", dequantization %.1f M weights/s", c.dequantize_weights_per_second / 1e6);
    out << line;
  }
  std::snprintf(line, sizeof line,
                "\n  step time: measured %.3f s/step, predicted %.3f s/step (uncalibrated model %s); "
                "time factor %.2f\n",
                c.measured_seconds / c.timed_steps, c.predicted_seconds / c.timed_steps,
                percent_off(c.measured_seconds, c.predicted_seconds).c_str(), c.time_factor());
  out << line;
  const MemoryBreakdown& p = c.predicted;
  out << "  peak memory over the pre-load baseline: measured " << format_bytes(c.measured_peak_bytes())
      << " (RSS), predicted " << format_bytes(p.peak()) << " ("
      << percent_off(double(c.measured_peak_bytes()), double(p.peak())) << ")"
      << (c.peak_is_steps_only ? "" : "; the peak includes the model load (clear_refs unavailable)") << "\n";
  out << "  of which weights: measured " << format_bytes(c.measured_weight_bytes()) << ", predicted "
      << format_bytes(p.base_weights + p.unquantized_weights) << "\n";
  out << "  comparable on a CPU: frozen weights, LoRA states, saved activations, the logits' buffers and the\n"
         "  backward's transients; not comparable: the CUDA context and the caching allocator's slack (GPU only),\n"
         "  and the CPU-only float dropout noise and fp32 dequantization buffers (the model switches them for GPUs).\n"
         "  The time factor says how far this code runs from its FLOP count on this machine; the GPU rows above\n"
         "  use the stated GPU efficiencies and are not rescaled by it.\n";
  return out.str();
}

nlohmann::json calibration_json(const Calibration& c) {
  return {{"warmup_steps", c.warmup_steps},
          {"timed_steps", c.timed_steps},
          {"timed_tokens", c.timed_tokens},
          {"measured_seconds_per_step", c.measured_seconds / c.timed_steps},
          {"predicted_seconds_per_step", c.predicted_seconds / c.timed_steps},
          {"time_factor", c.time_factor()},
          {"matmul_flops_per_second", c.matmul_flops_per_second},
          {"dequantize_weights_per_second", c.dequantize_weights_per_second},
          {"baseline_rss_bytes", c.baseline_rss_bytes},
          {"measured_weight_bytes", c.measured_weight_bytes()},
          {"measured_peak_bytes", c.measured_peak_bytes()},
          {"predicted_peak_bytes", c.predicted.peak()},
          {"predicted_weight_bytes", c.predicted.base_weights + c.predicted.unquantized_weights},
          {"peak_is_steps_only", c.peak_is_steps_only}};
}

}  // namespace autotrain
