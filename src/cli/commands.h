// The subcommands of the autotrain CLI: each file registers its options and the work to run.
#pragma once

#include <functional>

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

// Prints the version, libtorch's version and what CUDA support this build and machine have.
void print_version();

}  // namespace autotrain::cli
