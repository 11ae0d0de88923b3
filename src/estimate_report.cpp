// estimate-cost's verdicts (does the run fit each GPU, and what to change when it does not) and the two
// renderings of the estimate: a table for people and JSON for tools.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/estimate.h"

namespace autotrain {

namespace {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

std::string printf_string(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string quantization_name(const RunShape& shape) {
  switch (shape.quantization) {
    case BaseQuantization::none: return shape.compute_bytes == 4 ? "fp32" : "fp16/bf16";
    case BaseQuantization::int4: return shape.four_bit.double_quantize ? "NF4 + double quant" : "NF4";
    case BaseQuantization::int8: return "int8";
  }
  return "";
}

bool fits(const ModelConfig& config, const RunShape& shape, const GpuSpec& gpu) {
  return estimate_memory(config, shape).peak() <= gpu.memory_bytes();
}

// The cheaper of two estimates: dollars when both have a price, else hours.
bool cheaper(const TimeEstimate& a, const TimeEstimate& b) {
  if (a.dollars && b.dollars) return *a.dollars < *b.dollars;
  return a.gpu_hours < b.gpu_hours;
}

// Changes of the run that lower the peak, each the smallest of its kind that fits `gpu`.
std::vector<std::pair<std::string, RunShape>> fitting_changes(const ModelConfig& config, const RunShape& shape,
                                                              const GpuSpec& gpu) {
  std::vector<std::pair<std::string, RunShape>> changes;
  if (!shape.gradient_checkpointing) {
    RunShape changed = shape;
    changed.gradient_checkpointing = true;
    if (fits(config, changed, gpu))
      changes.emplace_back("gradient checkpointing on (disable_gradient_checkpointing false; ~1 more forward)",
                           changed);
  }
  const int64_t effective_batch = shape.batch_size * shape.gradient_accumulation;
  for (int64_t batch = shape.batch_size - 1; batch >= 1; --batch) {
    RunShape changed = shape;
    changed.batch_size = batch;
    changed.gradient_accumulation = (effective_batch + batch - 1) / batch;
    if (fits(config, changed, gpu)) {
      changes.emplace_back("batch_size " + std::to_string(batch) + " x gradient_accumulation " +
                               std::to_string(changed.gradient_accumulation) + " (effective batch " +
                               std::to_string(batch * changed.gradient_accumulation) + ")",
                           changed);
      break;
    }
  }
  for (int64_t block = shape.block_size / 2; block >= 64; block /= 2) {
    RunShape changed = shape;
    changed.block_size = block;
    if (fits(config, changed, gpu)) {
      changes.emplace_back("block_size " + std::to_string(block) + " (shorter context per block)", changed);
      break;
    }
  }
  if (shape.quantization != BaseQuantization::int4) {
    RunShape changed = shape;
    changed.quantization = BaseQuantization::int4;
    if (fits(config, changed, gpu)) changes.emplace_back("quantization int4 (NF4 base weights)", changed);
  }
  const std::vector<std::string> fewer = {"q_proj", "v_proj"};
  if (shape.target_modules.size() > fewer.size()) {
    RunShape changed = shape;
    changed.target_modules = fewer;
    if (fits(config, changed, gpu)) changes.emplace_back("target_modules q_proj,v_proj", changed);
  }
  if (changes.empty()) {  // no single change is enough: all of them together, then shorter blocks
    RunShape changed = shape;
    changed.gradient_checkpointing = true;
    changed.quantization = BaseQuantization::int4;
    changed.batch_size = 1;
    changed.gradient_accumulation = effective_batch;
    while (!fits(config, changed, gpu) && changed.block_size / 2 >= 64) changed.block_size /= 2;
    if (fits(config, changed, gpu))
      changes.emplace_back("checkpointing on + int4 + batch_size 1 x gradient_accumulation " +
                               std::to_string(effective_batch) + " + block_size " + std::to_string(changed.block_size),
                           changed);
  }
  return changes;
}

}  // namespace

GpuVerdict judge_gpu(const ModelConfig& config, const RunShape& shape, const DatasetSize& data, const GpuSpec& gpu,
                     const std::vector<GpuSpec>& catalogue, int gpu_count, std::optional<double> price) {
  GpuVerdict v;
  v.gpu = gpu;
  v.peak_bytes = estimate_memory(config, shape).peak();
  v.margin_bytes = gpu.memory_bytes() - v.peak_bytes;
  v.fits = v.margin_bytes >= 0;
  v.time = estimate_time(config, shape, data, gpu, gpu_count, price);
  if (!gpu.bf16) v.notes.push_back("no bf16 on " + gpu.name + ": use mixed_precision fp16");
  if (!price && !gpu.price_usd_per_hour) v.notes.push_back("no rental price in the catalogue; pass --price");
  if (v.fits) return v;

  for (auto& [change, changed] : fitting_changes(config, shape, gpu)) {
    const DatasetSize changed_data = dataset_size(data.tokens, changed, data.epochs, "dataset");
    v.remedies.push_back(Remedy{change, changed, estimate_memory(config, changed).peak(), gpu.name,
                                estimate_time(config, changed, changed_data, gpu, gpu_count, price)});
  }
  // A bigger GPU: the cheapest one of the catalogue that holds the run unchanged.
  std::optional<Remedy> bigger;
  for (const GpuSpec& other : catalogue) {
    if (other.name == gpu.name || !fits(config, shape, other) || !other.price_usd_per_hour) continue;
    Remedy remedy{"a bigger GPU: " + other.name + " (" + printf_string("%.0f", other.memory_gb) + " GB)", shape,
                  estimate_memory(config, shape).peak(), other.name,
                  estimate_time(config, shape, data, other, gpu_count, std::nullopt)};
    if (!bigger || cheaper(remedy.time, bigger->time)) bigger = remedy;
  }
  if (bigger) v.remedies.push_back(*bigger);
  std::stable_sort(v.remedies.begin(), v.remedies.end(),
                   [](const Remedy& a, const Remedy& b) { return cheaper(a.time, b.time); });
  return v;
}

CostEstimate estimate_cost(const ModelConfig& config, const RunShape& shape, const DatasetSize& data,
                           const std::vector<GpuSpec>& gpus, const std::vector<GpuSpec>& catalogue, int gpu_count,
                           std::optional<double> price) {
  CostEstimate e;
  e.model_type = config.model_type;
  e.config = config;
  e.shape = shape;
  e.data = data;
  e.gpu_count = gpu_count;
  e.memory = estimate_memory(config, shape);
  e.flops = estimate_flops_per_token(config, shape);
  for (const GpuSpec& gpu : gpus) e.verdicts.push_back(judge_gpu(config, shape, data, gpu, catalogue, gpu_count, price));
  std::optional<TimeEstimate> best;
  for (const GpuSpec& gpu : catalogue) {
    if (!fits(config, shape, gpu) || (!gpu.price_usd_per_hour && !price)) continue;
    TimeEstimate time = estimate_time(config, shape, data, gpu, gpu_count, price);
    if (!best || cheaper(time, *best)) {
      best = time;
      e.cheapest_fit = gpu.name;
    }
  }
  return e;
}

std::string format_bytes(int64_t bytes) {
  const double value = static_cast<double>(bytes);
  if (std::fabs(value) >= double(1LL << 30)) return printf_string("%.2f GiB", value / double(1LL << 30));
  if (std::fabs(value) >= double(1LL << 20)) return printf_string("%.1f MiB", value / double(1LL << 20));
  return printf_string("%.1f KiB", value / 1024.0);
}

std::string out_of_memory_advice(const ModelConfig& config, const RunShape& shape) {
  const MemoryBreakdown m = estimate_memory(config, shape);
  std::ostringstream out;
  out << "the estimate for batch_size " << shape.batch_size << " x block_size " << shape.block_size << " is "
      << format_bytes(m.peak()) << " (frozen base " << format_bytes(m.base_weights) << ", embeddings/lm_head "
      << format_bytes(m.unquantized_weights) << ", LoRA + AdamW " << format_bytes(m.lora) << ", activations "
      << format_bytes(m.activations) << ", logits " << format_bytes(m.logits) << ", backward "
      << format_bytes(m.backward_working) << ")";
  std::vector<std::pair<std::string, RunShape>> changes;
  if (shape.batch_size > 1) {
    RunShape changed = shape;
    changed.batch_size = shape.batch_size / 2;
    changed.gradient_accumulation = shape.gradient_accumulation * 2;
    changes.emplace_back("batch_size " + std::to_string(changed.batch_size) + " x gradient_accumulation " +
                             std::to_string(changed.gradient_accumulation) + " (or auto_find_batch_size: true)",
                         changed);
  }
  if (!shape.gradient_checkpointing) {
    RunShape changed = shape;
    changed.gradient_checkpointing = true;
    changes.emplace_back("disable_gradient_checkpointing false", changed);
  }
  if (shape.block_size >= 128) {
    RunShape changed = shape;
    changed.block_size = shape.block_size / 2;
    changes.emplace_back("block_size " + std::to_string(changed.block_size), changed);
  }
  if (shape.quantization != BaseQuantization::int4) {
    RunShape changed = shape;
    changed.quantization = BaseQuantization::int4;
    changes.emplace_back("quantization int4", changed);
  }
  // Only changes that lower the peak by a tenth or more are worth a retry.
  changes.erase(std::remove_if(changes.begin(), changes.end(),
                               [&](const auto& change) {
                                 return estimate_memory(config, change.second).peak() > m.peak() * 0.9;
                               }),
                changes.end());
  if (changes.size() > 3) changes.resize(3);
  if (!changes.empty()) out << "; try";
  for (size_t i = 0; i < changes.size(); ++i) {
    out << (i == 0 ? " " : ", or ") << changes[i].first << " ("
        << format_bytes(estimate_memory(config, changes[i].second).peak()) << ")";
  }
  return out.str();
}

namespace {

std::string dollars_text(const std::optional<double>& dollars) {
  return dollars ? printf_string("$%.2f", *dollars) : std::string("-");
}

std::string pad(const std::string& text, size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

}  // namespace

std::string render_cost_estimate(const CostEstimate& e) {
  const ModelConfig& c = e.config;
  const RunShape& s = e.shape;
  const MemoryBreakdown& m = e.memory;
  const int64_t tokens = s.tokens_per_micro_batch();
  std::ostringstream out;
  const double frozen = static_cast<double>(estimate_frozen_linear_parameter_count(c));
  out << "model: " << c.model_type << ", " << c.num_hidden_layers << " layers, hidden " << c.hidden_size
      << ", intermediate " << c.intermediate_size << ", heads " << c.num_attention_heads << "/"
      << c.num_key_value_heads << " (kv), vocab " << c.vocab_size << (c.tie_word_embeddings ? " (tied)" : "") << "; "
      << printf_string("%.2fB", frozen / 1e9) << " parameters in linear layers\n";
  out << "LoRA: r " << s.lora_r << " on " << join(s.target_modules, ",") << ": "
      << estimate_lora_parameter_count(c, s) << " trainable parameters\n";
  out << "data: " << e.data.tokens << " tokens -> " << e.data.blocks << " blocks of " << s.block_size << " -> "
      << e.data.micro_batches_per_epoch << " micro-batches of " << s.batch_size << " -> "
      << e.data.optimizer_steps_per_epoch << " optimizer steps per epoch x " << e.data.epochs << " epoch(s) = "
      << e.data.total_tokens() << " tokens trained\n";
  out << "run: " << (s.compute_bytes == 4 ? "fp32" : "fp16/bf16") << " compute, base " << quantization_name(s)
      << ", gradient checkpointing " << (s.gradient_checkpointing ? "on" : "off") << ", SDPA "
      << (s.attention == AttentionKernel::memory_efficient ? "memory-efficient (no T x T)" : "math (T x T per head)")
      << ", " << e.gpu_count << " GPU(s) data parallel\n\n";

  const bool logits_at_peak = m.logits >= m.backward_working;
  out << "peak GPU memory per GPU (one micro-batch of " << s.batch_size << " x " << s.block_size << " = " << tokens
      << " tokens):\n";
  auto row = [&out](const std::string& label, int64_t bytes, const std::string& note) {
    out << "  " << pad(label, 40) << pad(format_bytes(bytes), 12) << note << "\n";
  };
  row("frozen projections (" + quantization_name(s) + ")", m.base_weights,
      printf_string("%.4f B/param", static_cast<double>(m.base_weights) /
                                        static_cast<double>(frozen - double(c.vocab_size * c.hidden_size))));
  row("embedding, norms, lm_head", m.unquantized_weights,
      std::string(c.tie_word_embeddings ? "tied: counted once" : "embedding + lm_head") + ", " +
          std::to_string(s.compute_bytes) + " B/param");
  row("LoRA params + grads + optimizer", m.lora,
      printf_string("%.4g B x ", static_cast<double>(m.lora) / double(estimate_lora_parameter_count(c, s))) +
          std::to_string(estimate_lora_parameter_count(c, s)) + " (" + s.optimizer + ")");
  row(s.gradient_checkpointing ? "activations (checkpointed inputs)" : "activations (all layers)", m.activations,
      s.gradient_checkpointing
          ? "one layer input per layer"
          : format_bytes(estimate_layer_activation_bytes_per_token(c, s) * tokens) + " per layer");
  const int64_t loss_rows = std::min(tokens, lm_loss_chunk_rows(c.vocab_size, s.loss_chunk_bytes));
  if (s.lm_head)
    row("loss: 3 fp32 buffers of a chunk", m.logits,
        "12 B x vocab x " + std::to_string(loss_rows) + " of " + std::to_string(tokens) + " tokens + d hidden" +
            (logits_at_peak ? "" : " (not at the peak)"));
  else
    row("loss: d hidden (reward head)", m.logits,
        std::string("no LM head in a reward model's loss") + (logits_at_peak ? "" : " (not at the peak)"));
  row("backward working set", m.backward_working,
      std::string(s.gradient_checkpointing ? "1 layer recomputed + " : "") + "layer grads" +
          (s.quantization != BaseQuantization::none ? " + 1 dequantized weight" : "") +
          (logits_at_peak ? " (not at the peak)" : ""));
  if (m.cuda_context) row("CUDA context", m.cuda_context, "");
  if (m.allocator_slack) {
    const bool cuda = s.target == ExecutionTarget::cuda;
    row(cuda ? "allocator slack" : "heap kept by glibc", m.allocator_slack,
        printf_string("%.0f%% of the per-step memory", (cuda ? kAllocatorSlack : kCpuHeapRetention) * 100));
  }
  row("peak", m.peak(), "");

  const FlopsPerToken& f = e.flops;
  out << "\nFLOPs per token: " << printf_string("%.3g", f.forward) << " forward + " << printf_string("%.3g", f.backward)
      << " backward" << (f.recompute > 0 ? " + " + printf_string("%.3g", f.recompute) + " recompute" : "")
      << (f.reference > 0 ? " + " + printf_string("%.3g", f.reference) + " reference forward" : "") << " = "
      << printf_string("%.3g", f.total()) << printf_string(" (%.2f x N)", f.total() / frozen) << "; efficiency "
      << printf_string("%.2f", compute_efficiency(s)) << " of the GPU's dense fp16 TFLOPS\n\n";

  out << pad("GPU", 12) << pad("memory", 11) << pad("peak", 11) << pad("verdict", 28) << pad("hours", 10)
      << pad("GPU-h", 10) << pad("$/GPU-h", 9) << "$\n";
  for (const GpuVerdict& v : e.verdicts) {
    const std::string verdict = v.fits ? "fits, " + format_bytes(v.margin_bytes) + " free"
                                       : "DOES NOT FIT by " + format_bytes(-v.margin_bytes);
    const double per_hour = v.time.dollars && v.time.gpu_hours > 0 ? *v.time.dollars / v.time.gpu_hours : 0;
    out << pad(v.gpu.name, 12) << pad(printf_string("%.0f GB", v.gpu.memory_gb), 11) << pad(format_bytes(v.peak_bytes), 11)
        << pad(verdict, 28) << pad(printf_string("%.1f", v.time.hours), 10) << pad(printf_string("%.1f", v.time.gpu_hours), 10)
        << pad(v.time.dollars ? printf_string("%.2f", per_hour) : "-", 9) << dollars_text(v.time.dollars) << "\n";
  }
  for (const GpuVerdict& v : e.verdicts) {
    for (const std::string& note : v.notes) out << "  note (" << v.gpu.name << "): " << note << "\n";
    if (v.fits) continue;
    out << "\nto fit " << v.gpu.name << " (" << format_bytes(v.gpu.memory_bytes()) << "), cheapest first:\n";
    if (v.remedies.empty()) out << "  nothing in reach: no change or catalogued GPU holds this run\n";
    int rank = 0;
    for (const Remedy& r : v.remedies)
      out << "  " << ++rank << ". " << r.change << ": peak " << format_bytes(r.peak_bytes) << " on " << r.gpu << ", "
          << printf_string("%.1f h", r.time.hours) << ", " << dollars_text(r.time.dollars) << "\n";
  }
  out << "\ncheapest catalogued GPU that fits as configured: " << e.cheapest_fit.value_or("none") << "\n";
  return out.str();
}

nlohmann::json cost_estimate_json(const CostEstimate& e) {
  using nlohmann::json;
  auto time_json = [](const TimeEstimate& t) {
    return json{{"seconds_per_micro_batch", t.seconds_per_micro_batch},
                {"hours", t.hours},
                {"gpu_hours", t.gpu_hours},
                {"dollars", t.dollars ? json(*t.dollars) : json()}};
  };
  const MemoryBreakdown& m = e.memory;
  json verdicts = json::array();
  for (const GpuVerdict& v : e.verdicts) {
    json remedies = json::array();
    for (const Remedy& r : v.remedies)
      remedies.push_back({{"change", r.change}, {"gpu", r.gpu}, {"peak_bytes", r.peak_bytes}, {"time", time_json(r.time)}});
    verdicts.push_back({{"gpu", v.gpu.name},
                        {"memory_bytes", v.gpu.memory_bytes()},
                        {"peak_bytes", v.peak_bytes},
                        {"fits", v.fits},
                        {"margin_bytes", v.margin_bytes},
                        {"time", time_json(v.time)},
                        {"notes", v.notes},
                        {"remedies", remedies},
                        {"source", v.gpu.source}});
  }
  const RunShape& s = e.shape;
  return json{
      {"model_type", e.model_type},
      {"frozen_linear_parameters", estimate_frozen_linear_parameter_count(e.config)},
      {"lora_parameters", estimate_lora_parameter_count(e.config, s)},
      {"run",
       {{"batch_size", s.batch_size},
        {"block_size", s.block_size},
        {"gradient_accumulation", s.gradient_accumulation},
        {"compute_bytes", s.compute_bytes},
        {"quantization", quantization_name(s)},
        {"target_modules", s.target_modules},
        {"lora_r", s.lora_r},
        {"gradient_checkpointing", s.gradient_checkpointing},
        {"target", s.target == ExecutionTarget::cuda ? "cuda" : "cpu"},
        {"gpus", e.gpu_count}}},
      {"data",
       {{"tokens", e.data.tokens},
        {"blocks", e.data.blocks},
        {"micro_batches_per_epoch", e.data.micro_batches_per_epoch},
        {"optimizer_steps_per_epoch", e.data.optimizer_steps_per_epoch},
        {"epochs", e.data.epochs},
        {"tokens_trained", e.data.total_tokens()}}},
      {"memory",
       {{"base_weights", m.base_weights},
        {"unquantized_weights", m.unquantized_weights},
        {"lora", m.lora},
        {"activations", m.activations},
        {"logits", m.logits},
        {"backward_working", m.backward_working},
        {"cuda_context", m.cuda_context},
        {"allocator_slack", m.allocator_slack},
        {"peak", m.peak()}}},
      {"flops_per_token",
       {{"forward", e.flops.forward}, {"backward", e.flops.backward}, {"recompute", e.flops.recompute},
        {"reference", e.flops.reference}, {"total", e.flops.total()}}},
      {"efficiency", compute_efficiency(s)},
      {"gpus", verdicts},
      {"cheapest_fit", e.cheapest_fit ? json(*e.cheapest_fit) : json()}};
}

}  // namespace autotrain
