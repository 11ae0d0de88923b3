// autotrain: LoRA / QLoRA fine-tuning of Hugging Face causal language models, natively.
// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 130 / 143 stopped by SIGINT / SIGTERM.
#include <csignal>
#include <exception>
#include <iostream>
#include <new>
#include <vector>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include "autotrain/error.h"
#include "autotrain/logging.h"
#include "commands.h"

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

int run(int argc, char** argv) {
  CLI::App app{
      "autotrain: LoRA / QLoRA fine-tuning of Hugging Face Llama, Qwen2 and Mistral models,\n"
      "configured by Hugging Face AutoTrain's training_params.json.",
      "autotrain"};
  app.set_help_all_flag("--help-all", "Print the help of every subcommand");
  bool show_version = false;
  std::string log_level = "info";
  app.add_flag("--version", show_version, "Print the version and the CUDA support of this build");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")->capture_default_str();
  std::vector<autotrain::cli::Command> commands = {
      autotrain::cli::add_train_command(app),
      autotrain::cli::add_merge_adapter_command(app),
      autotrain::cli::add_estimate_cost_command(app),
      autotrain::cli::add_generate_command(app),
      autotrain::cli::add_export_gguf_command(app),
      autotrain::cli::add_eval_command(app),
      autotrain::cli::add_imatrix_command(app),
  };
  app.require_subcommand(0, 1);
  app.footer(
      "Examples:\n"
      "  autotrain train --config training_params.json\n"
      "  autotrain estimate-cost --config training_params.json --gpu L4\n"
      "  autotrain merge-adapter --base MODEL_DIR --adapter project-name --out merged-model\n"
      "  autotrain generate --model MODEL_DIR --adapter project-name --prompt \"Hello\"\n"
      "  autotrain eval --config training_params.json   (valid_split's loss with project_name's adapter)\n"
      "  autotrain export-gguf --model merged-model --out model.gguf --type q8_0\n"
      "Run 'autotrain SUBCOMMAND --help' for the options of each.\n"
      "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error,\n"
      "130 / 143 training stopped by SIGINT / SIGTERM (a checkpoint is saved; rerun to resume).");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return autotrain::kExitUsage;
  }

  autotrain::log::init(log_level);
  if (show_version) {
    autotrain::cli::print_version();
    return autotrain::kExitOk;
  }
  for (auto& command : commands) {
    if (command.app->parsed()) {
      command.run();
      return autotrain::kExitOk;
    }
  }
  std::cerr << app.help() << "error: name a subcommand (train, eval, generate, merge-adapter, export-gguf, estimate-cost)\n";
  return autotrain::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f, a quota) the kernel sends SIGXFSZ, whose default kills the process
  // without a word; ignored, write() fails with EFBIG and the writer names the file, like a full disk.
  std::signal(SIGXFSZ, SIG_IGN);
  // libc10 starts with this set (the Python module clears it): a failed CPU allocation would abort()
  // instead of throwing the c10::Error that becomes a one-line "out of memory" message.
  FLAGS_caffe2_use_fatal_for_enforce = false;
  try {
    return run(argc, argv);
  } catch (const autotrain::Error& e) {
    if (*e.what() != '\0') std::cerr << "error: " << e.what() << "\n";  // empty: already said (the workers did)
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of host memory; lower batch_size or block_size, or use a machine with more RAM\n";
    return autotrain::kExitRuntime;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << first_line(e.what_without_backtrace()) << "\n";
    return autotrain::kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return autotrain::kExitRuntime;
  }
}
