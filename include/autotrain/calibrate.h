// estimate-cost --calibrate: a few real optimizer steps of the configured run on this machine, with the same
// code as `train` (finetune.h, trainer.h), measured against the estimate: step time against the FLOP model
// (fed with this machine's measured matmul and dequantization rates) and the peak resident memory against
// the memory model for a CPU run (weights + LoRA states + activations + logits; no CUDA context or slack).
#pragma once

#include <cstdint>
#include <string>

#include "autotrain/config.h"
#include "autotrain/estimate.h"

namespace autotrain {

struct Calibration {
  int64_t warmup_steps = 1, timed_steps = 0, timed_micro_batches = 0, timed_tokens = 0;
  double measured_seconds = 0;   // the timed steps, wall clock
  double predicted_seconds = 0;  // the same steps by the uncalibrated model on this machine's rates
  double matmul_flops_per_second = 0;         // measured: the largest projection's matmul, compute dtype
  double dequantize_weights_per_second = 0;   // measured: the CPU dequantization of that projection (0: none)
  // Resident memory: before the model loads, after it loaded, and the peak during the steps.
  int64_t baseline_rss_bytes = 0, loaded_rss_bytes = 0, peak_rss_bytes = 0;
  bool peak_is_steps_only = true;  // false where /proc/self/clear_refs could not reset the high-water mark
  MemoryBreakdown predicted;       // the memory model for this run on the CPU

  double time_factor() const { return predicted_seconds > 0 ? measured_seconds / predicted_seconds : 0; }
  int64_t measured_peak_bytes() const { return peak_rss_bytes - baseline_rss_bytes; }
  int64_t measured_weight_bytes() const { return loaded_rss_bytes - baseline_rss_bytes; }
};

// Runs warm-up + `steps` optimizer steps of `params` in a temporary project folder (removed afterwards).
Calibration calibrate_on_this_machine(const TrainingParams& params, int64_t steps, const std::string& cache_dir);

std::string render_calibration(const Calibration& calibration);
nlohmann::json calibration_json(const Calibration& calibration);

}  // namespace autotrain
