// The subcommands of the autotrain CLI: each file registers its options and the work to run.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace autotrain::cli {

struct Command {
  CLI::App* app;              // the parsed subcommand
  std::function<void()> run;  // throws autotrain::Error on failure
};

Command add_train_command(CLI::App& parent);
Command add_merge_adapter_command(CLI::App& parent);
Command add_estimate_cost_command(CLI::App& parent);
Command add_generate_command(CLI::App& parent);
Command add_export_gguf_command(CLI::App& parent);
Command add_eval_command(CLI::App& parent);
Command add_imatrix_command(CLI::App& parent);

// The options that several subcommands share, worded once.
// --device auto|cpu|cuda (select_device in autotrain/device.h).
inline CLI::Option* add_device_option(CLI::App& app, std::string& device) {
  return app.add_option("--device", device, "auto (a CUDA GPU when there is one, else the CPU), cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
}
// --cache-dir DIR: where token caches go (default_cache_dir in autotrain/finetune.h when empty).
inline CLI::Option* add_cache_dir_option(CLI::App& app, std::string& cache_dir) {
  return app.add_option("--cache-dir", cache_dir,
                        "Where tokenized datasets are cached (default $AUTOTRAIN_CACHE_DIR or ~/.cache/autotrain)");
}

// Prints the version, libtorch's version and what CUDA support this build and machine have.
void print_version();

}  // namespace autotrain::cli
