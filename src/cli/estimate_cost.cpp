// autotrain estimate-cost --config training_params.json: peak GPU memory (broken down), fit verdicts,
// GPU-hours and dollars per catalogued GPU, remedies, and with --calibrate a measured run on this machine.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "autotrain/calibrate.h"
#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/hub_cache.h"
#include "autotrain/preference.h"
#include "autotrain/tokenizer.h"
#include "commands.h"

namespace autotrain::cli {

namespace fs = std::filesystem;

namespace {
struct EstimateOptions {
  std::string config_path;
  std::vector<std::string> gpus;
  int gpu_count = 1;
  double price = 0;
  bool calibrate = false, json = false;
  int calibrate_steps = 3;
  std::string model_config;  // a config.json (or a folder holding one) instead of the model's
  int64_t tokens = 0;        // dataset tokens instead of tokenizing data_path
  std::string catalogue;
  std::string cache_dir;
};

// A config.json file or a model folder; load_model_config reads folder/config.json.
ModelConfig read_model_config(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": no such file; pass a model folder or its config.json");
  if (fs::is_directory(path)) return load_model_config(path);
  const fs::path folder = fs::temp_directory_path() / ("autotrain-model-config-" + std::to_string(::getpid()));
  fs::create_directories(folder);
  fs::copy_file(path, folder / "config.json", fs::copy_options::overwrite_existing);
  try {
    ModelConfig config = load_model_config(folder.string());
    fs::remove_all(folder);
    return config;
  } catch (const Error& e) {
    fs::remove_all(folder);
    std::string message = e.what();
    const std::string copied = (folder / "config.json").string();
    if (auto at = message.find(copied); at != std::string::npos) message.replace(at, copied.size(), path);
    throw Error(message, e.exit_code());
  }
}

// The tokens `train` steps through in an epoch. Trainers dpo, orpo and reward: two sequences a pair, each counted at
// block_size tokens (a micro-batch is padded to its longest, at most that), so its steps are exact and its time an
// upper bound.
int64_t count_dataset_tokens(const TrainingParams& params, const std::string& cache_dir) {
  auto tokenizer = Tokenizer::load(params.model);
  if (trains_on_pairs(params.trainer)) {
    const int64_t block_size = effective_block_size(params);
    const auto pairs =
        read_preference_split(params, *tokenizer, params.train_split, preference_limits(params, block_size));
    return 2 * static_cast<int64_t>(pairs.size()) * block_size;
  }
  return tokenize_split(params, *tokenizer, params.train_split, cache_dir).size();
}

void run_estimate(const EstimateOptions& o) {
  TrainingParams params = load_training_params(o.config_path);
  // The model's folder (or a Hub id's snapshot in the local Hugging Face cache) is read unless --model-config and
  // --tokens stand in for everything in it.
  if (o.model_config.empty() || o.tokens <= 0 || o.calibrate) {
    try {
      params.model = resolve_model_folder(params.model);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; or pass --model-config FILE and --tokens N", e.exit_code());
    }
  }
  if (o.model_config.empty() && !fs::exists(params.model + "/config.json"))
    throw Error(params.model + "/config.json: not found; estimate-cost reads the model's config.json (weights are "
                "not needed): point \"model\" at a local folder, or pass --model-config FILE");
  const ModelConfig config = read_model_config(o.model_config.empty() ? params.model : o.model_config);

  const std::vector<GpuSpec> catalogue = load_gpu_catalogue(o.catalogue.empty() ? default_gpu_catalogue_path()
                                                                                 : o.catalogue);
  std::vector<GpuSpec> gpus;
  if (o.gpus.empty()) gpus = catalogue;
  for (const std::string& name : o.gpus)
    for (const GpuSpec& gpu : select_gpus(catalogue, name)) gpus.push_back(gpu);

  const std::string cache_dir = o.cache_dir.empty() ? default_cache_dir() : o.cache_dir;
  const int64_t tokens = o.tokens > 0 ? o.tokens : count_dataset_tokens(params, cache_dir);
  const RunShape shape = run_shape(params);
  const DatasetSize data = dataset_size(tokens, shape, params.epochs, params.data_path);
  const std::optional<double> price = o.price > 0 ? std::optional<double>(o.price) : std::nullopt;
  const CostEstimate estimate = estimate_cost(config, shape, data, gpus, catalogue, o.gpu_count, price);

  std::optional<Calibration> calibration;
  if (o.calibrate) {
    if (!o.model_config.empty() || o.tokens > 0)
      throw config_error("--calibrate runs the real model on the real data: drop --model-config and --tokens");
    calibration = calibrate_on_this_machine(params, o.calibrate_steps, cache_dir);
  }

  if (o.json) {
    nlohmann::json document = cost_estimate_json(estimate);
    if (calibration) document["calibration"] = calibration_json(*calibration);
    std::cout << document.dump(2) << "\n";
  } else {
    std::cout << render_cost_estimate(estimate);
    if (calibration) std::cout << render_calibration(*calibration);
  }
}

}  // namespace

Command add_estimate_cost_command(CLI::App& parent) {
  auto options = std::make_shared<EstimateOptions>();
  CLI::App* app = parent.add_subcommand(
      "estimate-cost", "Predict peak GPU memory, GPU-hours and dollars per GPU type before renting one");
  app->add_option("-c,--config", options->config_path, "AutoTrain-style training_params.json")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--gpu", options->gpus,
                  "GPU name(s) from configs/gpus.json, e.g. L4 A10G H100-SXM; a prefix selects all it matches "
                  "(H100, A100) (default: all)");
  app->add_option("--gpus", options->gpu_count, "Number of GPUs (data parallel)")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--price", options->price, "Override the price in USD per GPU-hour")->check(CLI::NonNegativeNumber);
  app->add_flag("--calibrate", options->calibrate, "Measure a few real steps on this machine to calibrate the time model");
  app->add_option("--calibrate-steps", options->calibrate_steps, "Optimizer steps timed by --calibrate (after 1 warm-up)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_flag("--json", options->json, "Print the estimate as JSON");
  app->add_option("--model-config", options->model_config,
                  "A config.json (or model folder) to use instead of the model's: no download needed");
  app->add_option("--tokens", options->tokens, "Dataset tokens, instead of tokenizing data_path")->check(CLI::PositiveNumber);
  app->add_option("--gpu-catalogue", options->catalogue, "GPU catalogue (default: configs/gpus.json)");
  app->add_option("--cache-dir", options->cache_dir, "Token cache folder (default: as train)");
  app->footer(
      "Examples:\n"
      "  autotrain estimate-cost --config training_params.json --gpu L4 --gpu A10G\n"
      "  autotrain estimate-cost --config training_params.json --model-config config.json --tokens 20000000\n"
      "  autotrain estimate-cost --config training_params.json --calibrate");
  auto run = [options] { run_estimate(*options); };
  return {app, run};
}

}  // namespace autotrain::cli
