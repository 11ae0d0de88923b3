// autotrain export-gguf --model DIR [--adapter DIR] --out FILE.gguf [--type f16|q8_0|q4_K_M|...]
//                      [--output-tensor-type T] [--token-embedding-type T] [--pure] [--imatrix FILE]
#include "autotrain/error.h"
#include "autotrain/gguf.h"
#include "autotrain/hub_cache.h"
#include "autotrain/logging.h"
#include "autotrain/progress.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct GgufArguments {
  std::string model, adapter, out, type = "f16", output_type, token_embedding_type, imatrix;
  bool merge = false, pure = false;
};
}  // namespace

Command add_export_gguf_command(CLI::App& parent) {
  auto arguments = std::make_shared<GgufArguments>();
  CLI::App* app = parent.add_subcommand("export-gguf", "Write a Hugging Face model folder as one GGUF file for llama.cpp / ollama");
  app->add_option("--model", arguments->model,
                  "Model folder (config.json + safetensors + tokenizer), e.g. merge-adapter's output, or a Hub id in "
                  "the local HF cache")
      ->required();
  app->add_option("--adapter", arguments->adapter,
                  "A PEFT LoRA adapter of --model: write it as llama.cpp's LoRA GGUF (llama-cli --lora, ollama "
                  "ADAPTER) instead of the model; --type f32, f16, bf16 or q8_0");
  app->add_flag("--merge", arguments->merge,
                "With --adapter: write the model with the adapter merged into it (merge-adapter's weights, any "
                "--type), without a merged folder on disk")
      ->needs("--adapter");
  app->add_option("--out", arguments->out, "GGUF file to write")->required();
  app->add_option("--type", arguments->type,
                  "f32, f16, bf16 or q8_0 (the 2-D weights, as convert_hf_to_gguf.py's --outtype), or a "
                  "llama-quantize preset: q4_0, q4_1, q5_0, q5_1, q2_K, q2_K_S (needs --imatrix), q3_K_S, "
                  "q3_K_M, q3_K_L, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K (norms and biases stay f32)")
      ->check(CLI::IsMember(gguf_type_names(), CLI::ignore_case))
      ->capture_default_str();
  app->add_option("--output-tensor-type", arguments->output_type,
                  "With a preset: output.weight (or a tied token_embd.weight) in this ggml type, as llama-quantize's "
                  "--output-tensor-type (q8_0 for bartowski-style _L files)");
  app->add_option("--token-embedding-type", arguments->token_embedding_type,
                  "With a preset: token_embd.weight in this ggml type, as llama-quantize's --token-embedding-type");
  app->add_flag("--pure", arguments->pure,
                "With a preset: every 2-D weight in its type, without llama-quantize's per-tensor mixture (its --pure)");
  app->add_option("--imatrix", arguments->imatrix,
                  "With a preset: an importance matrix (llama-imatrix's .gguf or .dat, or autotrain imatrix's) that "
                  "the blocks are fitted with, as llama-quantize's --imatrix; most useful for q2_K ... q3_K_*")
      ->check(CLI::ExistingFile);
  app->footer("Example:\n  autotrain merge-adapter --base BASE --adapter my-llm --out my-llm-merged\n"
              "  autotrain export-gguf --model my-llm-merged --out my-llm.Q4_K_M.gguf --type q4_K_M\n"
              "  autotrain export-gguf --model BASE --adapter my-llm --out my-llm.lora.gguf\n"
              "  autotrain export-gguf --model BASE --adapter my-llm --merge --out my-llm.Q4_K_M.gguf --type q4_K_M\n"
              "  autotrain export-gguf --model my-llm-merged --out my-llm.Q4_K_L.gguf --type q4_K_M "
              "--output-tensor-type q8_0 --token-embedding-type q8_0\n"
              "  autotrain export-gguf --model my-llm-merged --out my-llm.Q3_K_M.gguf --type q3_K_M "
              "--imatrix my-llm.imatrix.gguf");
  auto run = [arguments] {
    GgufOptions options;
    options.model_dir = resolve_model_folder(arguments->model);
    // A Hub id's snapshot folder is named by its commit: the GGUF is named by the id's model name instead.
    if (options.model_dir != arguments->model) options.name = arguments->model.substr(arguments->model.rfind('/') + 1);
    options.out_file = arguments->out;
    options.adapter_dir = arguments->adapter;
    options.merge_adapter = arguments->merge;
    options.type = parse_gguf_type(arguments->type);
    if (!arguments->output_type.empty()) options.output_type = parse_ggml_type(arguments->output_type);
    if (!arguments->token_embedding_type.empty())
      options.token_embedding_type = parse_ggml_type(arguments->token_embedding_type);
    options.pure = arguments->pure;
    options.imatrix_file = arguments->imatrix;
    const GgufSummary summary = export_gguf(options);
    std::string types;
    for (const auto& [type, count] : summary.tensor_types)
      types += log::cat(types.empty() ? "" : ", ", count, " ", type);
    log::info(log::cat("wrote ", arguments->out, ": ", summary.architecture, ", ", summary.tensors, " tensors (", types,
                       "), ", summary.metadata_entries, " metadata entries, ", format_count(double(summary.file_bytes)),
                       "B"));
  };
  return {app, run};
}

}  // namespace autotrain::cli
