#include "autotrain/profiling.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include <unistd.h>

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include "autotrain/error.h"
#include "autotrain/logging.h"

namespace autotrain {

namespace {

namespace prof = torch::profiler::impl;

// Total time, calls and share per name: CUDA kernels (and copies) when any ran, else CPU operators; on a GPU the
// wall time per step beside the kernels' (far apart: the host, not the GPU, sets the pace) and the CPU operators too.
void write_summary(const torch::autograd::profiler::ProfilerResult& result, int64_t steps, double wall_ms,
                   const std::string& path) {
  struct Total {
    double ns = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Total> device, host;
  for (const auto& event : result.events()) {
    auto& totals = event.deviceType() == c10::DeviceType::CUDA ? device : host;
    Total& t = totals[event.name()];
    t.ns += static_cast<double>(event.durationNs());
    ++t.calls;
  }
  std::ofstream out(path);
  const auto table = [&](const std::map<std::string, Total>& totals, const std::string& what, size_t rows_at_most) {
    std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    double sum = 0;
    for (const auto& [name, t] : rows) sum += t.ns;
    out << what << " over " << steps << " step(s): " << sum / 1e6 / static_cast<double>(steps) << " ms per step\n"
        << "ms/step    share  calls/step  name\n";
    for (size_t i = 0; i < std::min(rows.size(), rows_at_most); ++i) {
      const auto& [name, t] = rows[i];
      char line[64];
      std::snprintf(line, sizeof line, "%9.3f  %5.1f%%  %10.1f  ", t.ns / 1e6 / static_cast<double>(steps),
                    100.0 * t.ns / std::max(sum, 1.0), static_cast<double>(t.calls) / static_cast<double>(steps));
      out << line << name.substr(0, 200) << "\n";
    }
  };
  const bool on_device = !device.empty();
  out << "wall time over " << steps << " step(s): " << wall_ms / static_cast<double>(steps) << " ms per step\n";
  const std::string operators = "CPU operators (nested ones count in their callers too)";
  table(on_device ? device : host, on_device ? "CUDA kernels" : operators, SIZE_MAX);
  if (on_device) {
    out << "\n";
    table(host, operators, 40);
  }
  if (!out) throw Error(path + ": cannot write the profile summary; check the folder and free space");
}

}  // namespace

std::unique_ptr<StepProfiler> StepProfiler::from_environment() {
  const char* path = std::getenv("AUTOTRAIN_PROFILE");
  if (path == nullptr || *path == '\0') return nullptr;
  // Checked before training starts: an unwritable folder found at the profiled steps would only be a warning.
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  const std::string where = folder.empty() ? "." : folder.string();
  if (!std::filesystem::is_directory(where) || ::access(where.c_str(), W_OK) != 0)
    throw Error(std::string("AUTOTRAIN_PROFILE=") + path + ": the folder " + where +
                " does not exist or is not writable; give a file path in a writable folder");
  int64_t first = 4, last = 5;
  if (const char* steps = std::getenv("AUTOTRAIN_PROFILE_STEPS"); steps && *steps) {
    long long a = 0, b = 0;
    char extra = 0;
    if (std::sscanf(steps, "%lld-%lld%c", &a, &b, &extra) != 2 || a < 1 || b < a)
      throw Error(std::string("AUTOTRAIN_PROFILE_STEPS=") + steps + ": expected FIRST-LAST optimizer steps, e.g. 4-5");
    first = a;
    last = b;
  }
  return std::unique_ptr<StepProfiler>(new StepProfiler(path, first, last));
}

void StepProfiler::before_step(int64_t step) {
  if (step != first_ || running_) return;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (torch::cuda::is_available()) activities.insert(prof::ActivityType::CUDA);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  running_ = true;
  started_ = std::chrono::steady_clock::now();
  log::info(log::cat("profiling steps ", first_, "-", last_, " into ", path_));
}

void StepProfiler::after_step(int64_t step) {
  if (!running_ || step < last_) return;
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
  running_ = false;
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
  result->save(path_);
  try {  // a profile that cannot be written (disk full) must not end the training run
    write_summary(*result, last_ - first_ + 1, wall_ms, path_ + ".summary.txt");
  } catch (const Error& e) {
    log::warn(std::string("profile not written: ") + e.what());
    return;
  }
  log::info(log::cat("profile of steps ", first_, "-", last_, ": ", path_, " and ", path_, ".summary.txt"));
}

StepProfiler::~StepProfiler() {
  if (!running_) return;
  torch::autograd::profiler::disableProfiler();
  log::warn(log::cat("no profile written: the run ended before step ", last_, " (AUTOTRAIN_PROFILE_STEPS)"));
}

}  // namespace autotrain
