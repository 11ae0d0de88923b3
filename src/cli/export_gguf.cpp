// autotrain export-gguf --model DIR --out FILE.gguf [--type f16|q8_0]
#include "autotrain/error.h"
#include "autotrain/gguf.h"
#include "autotrain/hub_cache.h"
#include "autotrain/logging.h"
#include "autotrain/progress.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct GgufArguments {
  std::string model, out, type = "f16";
};
}  // namespace

Command add_export_gguf_command(CLI::App& parent) {
  auto arguments = std::make_shared<GgufArguments>();
  CLI::App* app = parent.add_subcommand("export-gguf", "Write a Hugging Face model folder as one GGUF file for llama.cpp / ollama");
  app->add_option("--model", arguments->model,
                  "Model folder (config.json + safetensors + tokenizer), e.g. merge-adapter's output, or a Hub id in "
                  "the local HF cache")
      ->required();
  app->add_option("--out", arguments->out, "GGUF file to write")->required();
  app->add_option("--type", arguments->type, "Type of the 2-D weights (norms and biases stay f32)")
      ->check(CLI::IsMember({"f16", "q8_0"}))
      ->capture_default_str();
  app->footer("Example:\n  autotrain merge-adapter --base BASE --adapter my-llm --out my-llm-merged\n"
              "  autotrain export-gguf --model my-llm-merged --out my-llm.q8_0.gguf --type q8_0");
  auto run = [arguments] {
    GgufOptions options;
    options.model_dir = resolve_model_folder(arguments->model);
    // A Hub id's snapshot folder is named by its commit: the GGUF is named by the id's model name instead.
    if (options.model_dir != arguments->model) options.name = arguments->model.substr(arguments->model.rfind('/') + 1);
    options.out_file = arguments->out;
    options.type = parse_gguf_type(arguments->type);
    const GgufSummary summary = export_gguf(options);
    log::info(log::cat("wrote ", arguments->out, ": ", summary.architecture, ", ", summary.tensors, " tensors, ",
                       summary.metadata_entries, " metadata entries, ", format_count(double(summary.file_bytes)), "B"));
  };
  return {app, run};
}

}  // namespace autotrain::cli
