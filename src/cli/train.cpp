// autotrain train --config training_params.json
#include <cstdio>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/device.h"
#include "autotrain/distributed.h"
#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/logging.h"
#include "autotrain/merge.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct TrainOptions {
  std::string config_path;
  bool check_only = false;
  FinetuneOptions finetune;
  bool no_resume = false;
  LaunchOptions launch;
};

// This process's command line after the program name, as the kernel holds it (the workers rerun it).
std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> arguments;
  for (size_t begin = 0; begin < all.size();) {
    const size_t end = all.find('\0', begin);
    arguments.push_back(all.substr(begin, end - begin));
    begin = end == std::string::npos ? all.size() : end + 1;
  }
  if (!arguments.empty()) arguments.erase(arguments.begin());
  return arguments;
}
}  // namespace

Command add_train_command(CLI::App& parent) {
  auto options = std::make_shared<TrainOptions>();
  CLI::App* app = parent.add_subcommand(
      "train", "Fine-tune a local Hugging Face model with LoRA / QLoRA, configured by training_params.json");
  app->add_option("-c,--config", options->config_path,
                  "AutoTrain-style training_params.json (model, data_path, lr, epochs, lora_r, ...)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_flag("--check", options->check_only,
                "Validate the configuration, print the effective parameters and exit");
  app->add_option("--save-steps", options->finetune.save_steps,
                  "Write a checkpoint every N optimizer steps (0: at the end of every epoch)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--resume", options->finetune.resume_from,
                  "Resume from this checkpoint folder (default: the newest complete checkpoint in project_name)")
      ->check(CLI::ExistingDirectory);
  app->add_flag("--no-resume", options->no_resume, "Start afresh even when project_name holds checkpoints (they are removed)");
  app->add_option("--stop-after-steps", options->finetune.stop_after_steps,
                  "Stop with a checkpoint after N optimizer steps in this run (resume later)")
      ->check(CLI::NonNegativeNumber);
  add_cache_dir_option(*app, options->finetune.cache_dir);
  app->add_option("--nproc-per-node", options->launch.nproc_per_node,
                  "Data-parallel workers to start on this machine (torchrun's option; gloo on CPU)")
      ->check(CLI::PositiveNumber);
  app->add_option("--nnodes", options->launch.nnodes, "Machines in the job (with --node-rank, --master-addr/port)")
      ->check(CLI::PositiveNumber);
  app->add_option("--node-rank", options->launch.node_rank, "This machine's index in the job, 0..nnodes-1")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--master-addr", options->launch.master_addr, "Address of the node-rank-0 machine")
      ->capture_default_str();
  app->add_option("--master-port", options->launch.master_port,
                  "Rendezvous port on the node-rank-0 machine (default: a free port on one machine, 29500 on several)")
      ->check(CLI::Range(1, 65535));
  add_device_option(*app, options->finetune.device);
  app->add_option("--ddp-timeout", options->finetune.ddp_timeout_seconds,
                  "Seconds a worker waits for the others (rendezvous, gradient sums) before it gives up")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->footer("Example:\n  autotrain train --config configs/example/training_params.json\n"
              "  autotrain train --config training_params.json --nproc-per-node 2   (two data-parallel workers)\n"
              "Writes into project_name/: training_params.json (every effective key, no token), adapter_config.json +\n"
              "adapter_model.safetensors (PEFT), metrics.jsonl, loss_curve.svg and checkpoint-N/ folders.\n"
              "Ctrl-C stops after the current step with a checkpoint; the same command resumes.");
  auto run = [options] {
    TrainingParams params = load_training_params(options->config_path);
    if (options->check_only) {
      std::printf("%s\n", to_json(params).dump(2).c_str());
      return;
    }
    const std::optional<WorkerPlace> place = worker_place_from_environment();
    const LaunchOptions& launch = options->launch;
    if (!place && (launch.nproc_per_node > 1 || launch.nnodes > 1)) {
      check_device_for_workers(options->finetune.device, launch.nproc_per_node * launch.nnodes);
      const int exit_code = launch_workers(launch, own_arguments());
      if (exit_code != 0) throw Error("", exit_code);  // the workers have said why
      return;
    }
    options->finetune.resume = !options->no_resume;
    TrainingSummary summary = run_finetune(params, options->finetune);
    if (place && place->rank != 0) return;  // rank 0 reports and merges
    if (summary.stopped_early) {
      log::info(log::cat("stopped at step ", summary.steps, "/", summary.total_steps,
                         " with a checkpoint in ", params.project_name, "; rerun to resume"));
      return;
    }
    std::string eval;
    if (summary.eval_loss) eval = log::cat(", eval loss ", *summary.eval_loss);
    log::info(log::cat("done: ", summary.steps, " steps, loss ", summary.first_loss, " -> ", summary.last_loss, eval,
                       "; adapter in ", params.project_name, "/ (adapter_model.safetensors), metrics in ",
                       params.project_name, "/metrics.jsonl"));
    if (params.merge_adapter) {
      // Into a subfolder: a folder holding both adapter_config.json and a full model makes transformers
      // try to load it as a PEFT adapter.
      MergeOptions merge;
      merge.base_dir = params.model;
      merge.adapter_dir = params.project_name;
      merge.out_dir = params.project_name + "/merged";
      merge.force = true;
      const MergeSummary merged = merge_adapter(merge);
      log::info(log::cat("merge_adapter: ", merged.merged_weights, " weights merged -> ", merge.out_dir));
    }
  };
  return {app, run};
}

}  // namespace autotrain::cli
