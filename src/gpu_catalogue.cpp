// configs/gpus.json: the GPU catalogue estimate-cost judges a run against.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/fileio.h"
#include "autotrain/text_util.h"

namespace autotrain {
namespace fs = std::filesystem;

namespace {

double positive_number(const nlohmann::json& entry, const char* key, const std::string& where) {
  if (!entry.contains(key) || !entry[key].is_number() || entry[key].get<double>() <= 0)
    throw Error(where + ": \"" + key + "\" must be a positive number");
  return entry[key].get<double>();
}

}  // namespace

std::vector<GpuSpec> load_gpu_catalogue(const std::string& path) {
  nlohmann::json document = parse_json_file(path, "fix the catalogue (the shipped one is configs/gpus.json)");
  if (!document.is_object() || !document.contains("gpus") || !document["gpus"].is_array())
    throw Error(path + ": expected an object with a \"gpus\" list");
  std::vector<GpuSpec> gpus;
  for (const auto& entry : document["gpus"]) {
    const std::string where = path + ": gpus[" + std::to_string(gpus.size()) + "]";
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string())
      throw Error(where + ": every GPU needs a \"name\"");
    GpuSpec gpu;
    gpu.name = entry["name"].get<std::string>();
    gpu.memory_gb = positive_number(entry, "memory_gb", where + " (" + gpu.name + ")");
    gpu.bandwidth_gbps = positive_number(entry, "bandwidth_gbps", where + " (" + gpu.name + ")");
    gpu.fp16_tflops = positive_number(entry, "fp16_tflops", where + " (" + gpu.name + ")");
    gpu.bf16 = entry.value("bf16", true);
    if (entry.contains("price_usd_per_hour") && entry["price_usd_per_hour"].is_number())
      gpu.price_usd_per_hour = entry["price_usd_per_hour"].get<double>();
    gpu.source = entry.value("source", "");
    gpus.push_back(gpu);
  }
  if (gpus.empty()) throw Error(path + ": the catalogue lists no GPU");
  return gpus;
}

std::string default_gpu_catalogue_path() {
  if (const char* path = std::getenv("AUTOTRAIN_GPU_CATALOGUE"); path && *path) return path;
  std::error_code error;
  const fs::path binary = fs::read_symlink("/proc/self/exe", error);
  std::vector<fs::path> candidates;
  if (!error) {
    const fs::path dir = binary.parent_path();
    // build/autotrain, build/<config>/autotrain, and an install prefix's bin/autotrain.
    candidates = {dir / "../configs/gpus.json", dir / "../../configs/gpus.json", dir / "../share/autotrain/gpus.json"};
  }
  candidates.push_back("configs/gpus.json");
  for (const fs::path& candidate : candidates)
    if (fs::exists(candidate)) return fs::weakly_canonical(candidate).string();
  throw Error("the GPU catalogue configs/gpus.json was not found next to the autotrain binary; pass "
              "--gpu-catalogue PATH or set AUTOTRAIN_GPU_CATALOGUE");
}

std::vector<GpuSpec> select_gpus(const std::vector<GpuSpec>& catalogue, const std::string& name) {
  const std::string wanted = ascii_lower(name);
  for (const GpuSpec& gpu : catalogue)
    if (ascii_lower(gpu.name) == wanted) return {gpu};
  std::vector<GpuSpec> selected;
  for (const GpuSpec& gpu : catalogue)
    if (ascii_lower(gpu.name).rfind(wanted, 0) == 0) selected.push_back(gpu);
  if (selected.empty()) {
    std::string known;
    for (const GpuSpec& gpu : catalogue) known += (known.empty() ? "" : ", ") + gpu.name;
    throw config_error("unknown GPU \"" + name + "\"; known: " + known);
  }
  return selected;
}

}  // namespace autotrain
