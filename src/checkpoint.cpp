#include "autotrain/checkpoint.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/logging.h"
#include "autotrain/safetensors.h"

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kPrefix = "checkpoint-";

std::optional<int64_t> checkpoint_step(const fs::path& folder) {
  const std::string name = folder.filename().string();
  if (name.rfind(kPrefix, 0) != 0 || name.size() == kPrefix.size()) return std::nullopt;
  const std::string digits = name.substr(kPrefix.size());
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit)) return std::nullopt;  // e.g. checkpoint-7.partial
  return std::stoll(digits);
}

std::vector<std::pair<int64_t, std::string>> checkpoints_in(const std::string& project) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(project)) return found;
  for (const auto& entry : fs::directory_iterator(project)) {
    auto step = checkpoint_step(entry.path());
    if (entry.is_directory() && step && fs::exists(entry.path() / "trainer_state.json")) {
      found.emplace_back(*step, entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The GPU the trained parameters live on, if any: LoRA dropout draws from its generator.
std::optional<at::Device> gpu_of(const Optimizer& optimizer) {
  for (const auto& [name, parameter] : optimizer.parameters())
    if (!parameter.is_cpu()) return parameter.device();
  return std::nullopt;
}

json to_json(const TrainerState& s) {
  json j{{"global_step", s.global_step},   {"scheduler_step", s.scheduler_step},
              {"skipped_steps", s.skipped_steps}, {"epoch", s.epoch},
              {"micro_batch", s.micro_batch},   {"loss_scale", s.loss_scale},
              {"growth_tracker", s.growth_tracker}, {"first_loss", s.first_loss},
              {"fingerprint", s.fingerprint}, {"world_size", s.world_size}};
  if (s.plateau) {  // no best yet is null (JSON has no infinity)
    j["plateau"] = {{"lr", s.plateau->lr},
                    {"best", s.plateau->best ? json(*s.plateau->best) : json()},
                    {"bad_evaluations", s.plateau->bad_evaluations}};
  }
  return j;
}

TrainerState state_from_json(const json& j, const std::string& path) {
  try {
    TrainerState s;
    s.global_step = j.at("global_step");
    s.scheduler_step = j.at("scheduler_step");
    s.skipped_steps = j.at("skipped_steps");
    s.epoch = j.at("epoch");
    s.micro_batch = j.at("micro_batch");
    s.loss_scale = j.at("loss_scale");
    s.growth_tracker = j.at("growth_tracker");
    s.first_loss = j.at("first_loss");
    s.fingerprint = j.at("fingerprint");
    s.world_size = j.value("world_size", int64_t{1});
    if (j.contains("plateau")) {
      const json& plateau = j.at("plateau");
      s.plateau = PlateauState{plateau.at("lr"), std::nullopt, plateau.at("bad_evaluations")};
      if (!plateau.at("best").is_null()) s.plateau->best = plateau.at("best").get<double>();
    }
    return s;
  } catch (const json::exception& e) {
    throw Error(path + ": not a trainer state written by autotrain (" + e.what() + ")");
  }
}

}  // namespace

std::string save_checkpoint(const std::string& project, const TrainerState& state, const Optimizer& optimizer,
                            const std::function<void(const std::string& folder)>& save_adapter, int64_t keep) {
  const fs::path final_folder = fs::path(project) / (kPrefix + std::to_string(state.global_step));
  const fs::path partial = final_folder.string() + ".partial";
  std::error_code ignored;
  fs::remove_all(partial, ignored);
  try {
    make_directories(partial.string());
    save_adapter(partial.string());
    auto tensors = optimizer.state();
    tensors.emplace_back("cpu_rng_state", rng_state(at::kCPU));
    if (const auto gpu = gpu_of(optimizer)) tensors.emplace_back("cuda_rng_state", rng_state(*gpu));
    write_safetensors((partial / "optimizer.safetensors").string(), tensors);
    write_file_atomic((partial / "trainer_state.json").string(), to_json(state).dump(2) + "\n");
  } catch (const Error& e) {
    // A full disk: give back what the partial checkpoint took; the complete ones are untouched.
    fs::remove_all(partial, ignored);
    throw Error(std::string(e.what()) + " (" + final_folder.filename().string() +
                    " not written; earlier checkpoints are kept)",
                e.exit_code());
  } catch (...) {
    fs::remove_all(partial, ignored);
    throw;
  }
  fs::remove_all(final_folder, ignored);
  std::error_code error;
  fs::rename(partial, final_folder, error);
  if (error) throw Error(partial.string() + ": cannot rename to " + final_folder.string() + " (" + error.message() + ")");

  auto all = checkpoints_in(project);
  const auto limit = static_cast<size_t>(std::max<int64_t>(keep, 1));
  for (size_t i = 0; i + limit < all.size(); ++i) {
    if (all[i].second == final_folder.string()) continue;
    fs::remove_all(all[i].second, ignored);
  }
  return final_folder.string();
}

std::optional<std::string> newest_checkpoint(const std::string& project) {
  auto all = checkpoints_in(project);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

int64_t remove_checkpoints(const std::string& project) {
  int64_t removed = 0;
  std::error_code ignored;
  if (!fs::is_directory(project)) return 0;
  for (const auto& entry : fs::directory_iterator(project)) {
    if (entry.is_directory() && entry.path().filename().string().rfind(kPrefix, 0) == 0) {
      fs::remove_all(entry.path(), ignored);
      ++removed;
    }
  }
  return removed;
}

TrainerState load_checkpoint(const std::string& folder, Optimizer& optimizer) {
  const std::string state_path = folder + "/trainer_state.json";
  TrainerState state = state_from_json(parse_json_file(state_path, "delete this checkpoint folder"), state_path);

  load_adapter_weights(folder, optimizer.parameters());
  const std::string optimizer_path = folder + "/optimizer.safetensors";
  auto optimizer_file = SafetensorsFile::open(optimizer_path);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& name : optimizer_file->names()) tensors.emplace_back(name, optimizer_file->tensor(name));
  optimizer.load_state(tensors, optimizer_path);
  if (!optimizer_file->has("cpu_rng_state")) throw Error(optimizer_path + ": tensor cpu_rng_state is missing");
  set_rng_state(at::kCPU, optimizer_file->tensor("cpu_rng_state").clone());
  if (const auto gpu = gpu_of(optimizer)) {
    if (optimizer_file->has("cuda_rng_state")) {
      set_rng_state(*gpu, optimizer_file->tensor("cuda_rng_state").clone());
    } else {
      log::warn(optimizer_path + ": written by a CPU run, so the GPU's dropout masks continue from this run's seed, "
                "not the checkpointed run's");
    }
  }
  return state;
}

}  // namespace autotrain
