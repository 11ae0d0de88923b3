#include "autotrain/calibrate.h"

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
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

// Tokens and micro-batches of each optimizer step from the first, as train() cuts epochs into windows.
struct StepWork {
  int64_t tokens = 0, micro_batches = 0;
};
std::vector<StepWork> step_work(int64_t blocks, const RunShape& shape, int64_t steps) {
  const int64_t micro = micro_batches_per_epoch(blocks, shape.batch_size);
  std::vector<StepWork> work;
  int64_t m = 0;
  for (int64_t step = 0; step < steps; ++step) {
    StepWork w;
    w.micro_batches = std::min(shape.gradient_accumulation, micro - m);
    for (int64_t j = m; j < m + w.micro_batches; ++j)
      w.tokens += std::min(shape.batch_size, blocks - j * shape.batch_size) * shape.block_size;
    work.push_back(w);
    m = m + w.micro_batches >= micro ? 0 : m + w.micro_batches;
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
  if (trains_on_pairs(params.trainer))
    throw config_error("--calibrate times the default and sft trainers; with trainer " + params.trainer +
                       " it is not supported yet (the estimate without --calibrate covers it)");
  Calibration c;
  c.timed_steps = steps;
  at::manual_seed(static_cast<uint64_t>(params.seed));
  const RunShape shape = run_shape(params, ExecutionTarget::cpu);
  auto tokenizer = Tokenizer::load(params.model);
  TrainingData data{tokenize_split(params, *tokenizer, params.train_split, cache_dir), std::nullopt, shape.block_size,
                    "calibration"};
  const DatasetSize size = dataset_size(data.train.size(), shape, 1, params.data_path);

  TempFolder folder;
  TrainingParams run = params;
  run.project_name = folder.path + "/run";
  run.valid_split = std::nullopt;
  run.epochs = std::max<int64_t>(params.epochs, (c.warmup_steps + steps + size.optimizer_steps_per_epoch - 1) /
                                                    size.optimizer_steps_per_epoch);

  // The kernels' rates first: their one-time buffers (BLAS packing, thread pools) join the baseline, as the
  // CUDA context stays out of the comparison on a GPU.
  const ModelOptions options = finetune_model_options(params);
  measure_rates(load_model_config(params.model), shape, options, c);
  c.baseline_rss_bytes = resident_memory_bytes();
  CausalLM model(params.model, options);
  c.loaded_rss_bytes = resident_memory_bytes();
  c.predicted = estimate_memory(model.config(), shape);
  c.peak_is_steps_only = reset_peak_rss();

  TrainableModel trainable = trainable_model(model, finetune_adapter_config(params, options));
  TrainerOptions trainer_options{run, 0, "", false, c.warmup_steps + steps};
  train(trainable, data, trainer_options);
  c.peak_rss_bytes = peak_rss_bytes();

  // metrics.jsonl: tokens_per_second is cumulative since the loop started, so step k ended at
  // tokens(1..k) / tokens_per_second(k) seconds.
  const auto metrics = read_metrics(run.project_name + "/metrics.jsonl");
  const std::vector<StepWork> work = step_work(size.blocks, shape, c.warmup_steps + steps);
  std::vector<double> ended;
  int64_t cumulative = 0;
  for (const auto& record : metrics) {
    if (!record.contains("tokens_per_second")) continue;
    cumulative += work.at(ended.size()).tokens;
    ended.push_back(double(cumulative) / record["tokens_per_second"].get<double>());
    if (static_cast<int64_t>(ended.size()) == c.warmup_steps + steps) break;
  }
  if (static_cast<int64_t>(ended.size()) <= c.warmup_steps) throw Error("estimate-cost --calibrate: no step was timed");
  c.timed_steps = static_cast<int64_t>(ended.size()) - c.warmup_steps;
  c.measured_seconds = ended.back() - ended[c.warmup_steps - 1];
  for (int64_t k = c.warmup_steps; k < c.warmup_steps + c.timed_steps; ++k) {
    c.timed_tokens += work[k].tokens;
    c.timed_micro_batches += work[k].micro_batches;
  }

  const double flops = estimate_flops_per_token(model.config(), shape).total();
  c.predicted_seconds = double(c.timed_tokens) * flops / c.matmul_flops_per_second;
  if (c.dequantize_weights_per_second > 0) {
    const double weights = double(estimate_frozen_linear_parameter_count(model.config()) -
                                  model.config().vocab_size * model.config().hidden_size);
    const double passes = shape.gradient_checkpointing ? 3 : 2;
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
