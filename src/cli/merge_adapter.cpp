// autotrain merge-adapter --base DIR --adapter DIR --out DIR [--dtype fp16|bf16|fp32] [--max-shard-size 5GB]
#include <chrono>

#include "autotrain/error.h"
#include "autotrain/logging.h"
#include "autotrain/merge.h"
#include "autotrain/progress.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct MergeArguments {
  std::string base, adapter, out, dtype, max_shard_size = "5GB";
  bool force = false;
};
}  // namespace

Command add_merge_adapter_command(CLI::App& parent) {
  auto arguments = std::make_shared<MergeArguments>();
  CLI::App* app = parent.add_subcommand(
      "merge-adapter", "Merge a LoRA adapter into its base model and write a Hugging Face model folder");
  app->add_option("--base", arguments->base,
                  "Base model folder (config.json + safetensors), the original fp16/bf16/fp32 weights, or its Hub id "
                  "when it is in the local HF cache")
      ->required();
  app->add_option("--adapter", arguments->adapter, "Adapter folder (adapter_config.json + adapter_model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--out", arguments->out, "Output folder for the merged model (written as OUT.partial-PID, then renamed)")
      ->required();
  app->add_option("--dtype", arguments->dtype, "Output dtype (default: the base config's dtype)")
      ->check(CLI::IsMember({"fp16", "bf16", "fp32"}));
  app->add_option("--max-shard-size", arguments->max_shard_size, "Largest safetensors shard, e.g. 5GB or 500MB")
      ->capture_default_str();
  app->add_flag("--force", arguments->force, "Replace --out if it exists and is not empty");
  app->footer("Example:\n  autotrain merge-adapter --base models/Qwen2-0.5B --adapter my-llm --out my-llm-merged --dtype bf16");
  auto run = [arguments] {
    MergeOptions options;
    options.base_dir = arguments->base;
    options.adapter_dir = arguments->adapter;
    options.out_dir = arguments->out;
    if (!arguments->dtype.empty()) options.dtype = parse_dtype_name(arguments->dtype);
    options.max_shard_bytes = parse_byte_size(arguments->max_shard_size);
    options.force = arguments->force;
    const auto start = std::chrono::steady_clock::now();
    const MergeSummary summary = merge_adapter(options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info(log::cat("merged ", summary.merged_weights, " LoRA weights; wrote ", summary.tensors, " tensors (",
                       format_count(double(summary.bytes)), "B) in ", summary.files.size(), " file(s) to ",
                       arguments->out, " in ", format_duration(seconds),
                       summary.reward_model ? "; a reward model (*ForSequenceClassification): the adapter's score "
                                              "head in place of lm_head"
                                            : ""));
  };
  return {app, run};
}

}  // namespace autotrain::cli
