// Optional profile of a few training steps (or generated tokens) with libtorch's Kineto profiler (CPU operators and
// CUDA kernels), for finding where a step's time goes:
//   AUTOTRAIN_PROFILE=FILE            the trace, in Chrome's JSON format (chrome://tracing, Perfetto)
//   AUTOTRAIN_PROFILE_STEPS=FIRST-LAST   the optimizer steps (generate: new tokens) to record (default 4-5, after the
//                                        warm-up)
// FILE.summary.txt gets the wall time per step and the time per CUDA kernel (or, on the CPU, per operator), most
// first; on a GPU then the CPU operators' too (wall time far above the kernels': the host sets the pace).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace autotrain {

class StepProfiler {
 public:
  // Null unless AUTOTRAIN_PROFILE is set. Throws Error on an unreadable AUTOTRAIN_PROFILE_STEPS.
  static std::unique_ptr<StepProfiler> from_environment();

  // Around each optimizer step (generate: each new token), numbered from 1 as the metrics are.
  void before_step(int64_t step);
  void after_step(int64_t step);
  ~StepProfiler();

 private:
  StepProfiler(std::string path, int64_t first, int64_t last) : path_(std::move(path)), first_(first), last_(last) {}
  std::string path_;
  int64_t first_, last_;
  bool running_ = false;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace autotrain
