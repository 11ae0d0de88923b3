// autotrain eval --config training_params.json [--adapter DIR | --no-adapter] [--split NAME] [--json]
// autotrain imatrix --config training_params.json [--adapter DIR | --no-adapter] [--split NAME] --out FILE
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/evaluate.h"
#include "autotrain/logging.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct EvalCommandOptions {
  std::string config_path, model_dir, data_path, text_column, quantization, mixed_precision, chat_template, trainer;
  std::string gguf_type;
  std::string prompt_text_column, rejected_text_column;
  int64_t block_size = -1;
  CLI::Option* block_size_option = nullptr;  // given or not
  bool no_adapter = false, json = false;
  EvaluateOptions evaluate;
};

// The run's training parameters: the config's (or AutoTrain's defaults with peft on), the options given in place
// of its keys.
TrainingParams eval_params(const EvalCommandOptions& o) {
  nlohmann::json overrides = nlohmann::json::object();
  if (!o.model_dir.empty()) overrides["model"] = o.model_dir;
  if (!o.data_path.empty()) overrides["data_path"] = o.data_path;
  if (!o.text_column.empty()) overrides["text_column"] = o.text_column;
  if (o.block_size_option->count() > 0) overrides["block_size"] = o.block_size;
  if (!o.quantization.empty()) overrides["quantization"] = o.quantization;
  if (!o.mixed_precision.empty()) overrides["mixed_precision"] = o.mixed_precision;
  if (!o.chat_template.empty()) overrides["chat_template"] = o.chat_template;
  if (!o.trainer.empty()) overrides["trainer"] = o.trainer;
  if (!o.prompt_text_column.empty()) overrides["prompt_text_column"] = o.prompt_text_column;
  if (!o.rejected_text_column.empty()) overrides["rejected_text_column"] = o.rejected_text_column;
  if (o.config_path.empty() && o.model_dir.empty())
    throw config_error("give --config training_params.json, or --model DIR with --data and --split");
  overrides["peft"] = true;  // the key `train` requires; eval trains nothing
  if (o.config_path.empty()) return parse_training_params(overrides, "the command line");
  // The options alone first, so that a bad value is said to come from the command line.
  check_training_param_values(overrides, "the command line");
  return load_training_params(o.config_path, overrides);
}

// The options eval and imatrix share: the run's config or its keys, the adapter, the split, the device.
void add_scoring_options(CLI::App* app, EvalCommandOptions* o, bool imatrix) {
  const std::string split_key = imatrix ? "train_split" : "valid_split";
  app->add_option("-c,--config", o->config_path,
                  "The training_params.json of a run: its model, data_path, " + split_key +
                      ", text_column, block_size, add_eos_token, chat_template, trainer, " +
                      (imatrix ? "" : "quantization, ") +
                  "mixed_precision and batch_size, and project_name's adapter")
      ->check(CLI::ExistingFile);
  app->add_option("-m,--model", o->model_dir,
                  "Hugging Face model folder, or a Hub id in the local HF cache (in place of the config's model)");
  app->add_option("-a,--adapter", o->evaluate.adapter_dir,
                  "PEFT adapter folder (default with --config: project_name, when it holds an adapter)")
      ->check(CLI::ExistingDirectory);
  app->add_flag("--no-adapter", o->no_adapter, "The base model alone");
  app->add_option("-d,--data", o->data_path,
                  "A data file, a folder of <split>.jsonl|json|csv|txt|parquet|arrow, of datasets' shards or saved by "
                  "save_to_disk, or a Hub dataset id in the local cache (data_path)");
  app->add_option("-s,--split", o->evaluate.split,
                  imatrix ? "The split to run (default: the config's train_split, train)"
                          : "The split to score (default: the config's valid_split)");
  app->add_option("--text-column", o->text_column,
                  imatrix ? "The column of texts (text_column; default text)"
                          : "The column of texts (text_column; default text); trainers dpo / orpo / reward: the chosen "
                            "ones");
  o->block_size_option =
      app->add_option("--block-size", o->block_size, "Tokens per block (block_size; -1: min(model_max_length, 1024))");
  app->add_option("--quantization", o->quantization,
                  imatrix ? "The base's 7 projections: none (the default, whatever the config says: the weights "
                            "export-gguf quantizes), or int4 / int8 to fit a model that does not fit unquantized"
                          : "The base's 7 projections: int4 (NF4), int8 or none")
      ->check(CLI::IsMember({"int4", "int8", "none"}));
  app->add_option("--mixed-precision", o->mixed_precision, "Compute dtype: fp16, bf16 or none (fp32)")
      ->check(CLI::IsMember({"fp16", "bf16", "none"}));
  app->add_option("--chat-template", o->chat_template,
                  "tokenizer: the column holds conversations, written by the model's chat template; none: texts")
      ->check(CLI::IsMember({"tokenizer", "none"}));
  if (imatrix) {
    app->add_option("--trainer", o->trainer, "How texts are packed: default (eos as text, add_eos_token) or sft "
                                             "(the eos id after every text)")
        ->check(CLI::IsMember({"default", "sft"}));
  } else {
    app->add_option("--prompt-text-column", o->prompt_text_column,
                    "Trainers dpo / orpo: the prompts' column (prompt_text_column); reward: prepended when given");
    app->add_option("--rejected-text-column", o->rejected_text_column,
                    "Trainers dpo / orpo / reward: the rejected texts' column (rejected_text_column)");
    app->add_option("--trainer", o->trainer, "How texts are packed: default (eos as text, add_eos_token) or sft "
                                             "(the eos id after every text); dpo / orpo: the DPO / ORPO loss and "
                                             "rewards of preference pairs; reward: a reward adapter's loss, "
                                             "accuracy and margin on pairs")
        ->check(CLI::IsMember({"default", "sft", "dpo", "orpo", "reward"}));
  }
  app->add_option("-b,--batch-size", o->evaluate.batch_size, "Blocks per forward (default: batch_size)")
      ->check(CLI::PositiveNumber);
  add_device_option(*app, o->evaluate.device);
  add_cache_dir_option(*app, o->evaluate.cache_dir);
}

// The config's project_name holds the run's adapter: taken unless --adapter or --no-adapter says otherwise.
void default_adapter(const EvalCommandOptions& o, const TrainingParams& params, EvaluateOptions& options) {
  if (o.no_adapter && !options.adapter_dir.empty())
    throw config_error("--adapter and --no-adapter together; give one");
  if (!options.adapter_dir.empty() || o.no_adapter || o.config_path.empty()) return;
  if (std::filesystem::exists(params.project_name + "/adapter_config.json")) {
    options.adapter_dir = params.project_name;
  } else {
    log::info("no adapter in " + params.project_name + "/ (the config's project_name): the base alone");
  }
}
}  // namespace

Command add_eval_command(CLI::App& parent) {
  auto o = std::make_shared<EvalCommandOptions>();
  CLI::App* app = parent.add_subcommand(
      "eval", "Loss and perplexity of a model, with or without a LoRA adapter, on a split of a dataset");
  add_scoring_options(app, o.get(), false);
  app->add_option("--gguf-type", o->gguf_type,
                  "Score the base's weights as export-gguf's TYPE stores them (f16, q8_0, q4_K_M, ...; llama.cpp's "
                  "dequantized values; the adapter unmerged, as a LoRA GGUF): the quality the GGUF keeps")
      ->check(CLI::IsMember(gguf_type_names(), CLI::ignore_case));
  app->add_option("--imatrix", o->evaluate.imatrix_file,
                  "With --gguf-type: the importance matrix export-gguf --imatrix would quantize with")
      ->check(CLI::ExistingFile)
      ->needs("--gguf-type");
  app->add_flag("--json", o->json, "Print the result as one JSON object instead of a line of text");
  app->footer("Examples:\n"
              "  autotrain eval --config training_params.json     (valid_split, with project_name's adapter)\n"
              "  autotrain eval --config training_params.json --no-adapter   (the base, for comparison)\n"
              "  autotrain eval --model MODEL_DIR --adapter ADAPTER_DIR --data data --split test --json\n"
              "The loss is the mean over every predicted token of the split's whole blocks (the texts tokenized with\n"
              "eos and packed as train does), as the training loop's eval_loss; perplexity is exp(loss).");
  auto run = [o] {
    const TrainingParams params = eval_params(*o);
    EvaluateOptions options = o->evaluate;
    if (!o->gguf_type.empty()) options.gguf_type = parse_gguf_type(o->gguf_type);
    default_adapter(*o, params, options);
    const EvaluationResult result = run_evaluation(params, options);
    if (o->json) {
      std::printf("%s\n", to_json(result).dump().c_str());
      return;
    }
    if (result.preference) {
      const bool dpo = params.trainer == "dpo";
      std::printf("eval %s loss %.6f, reward accuracy %.4f, reward margin %.6f: %lld pairs of %s, %s%s (%.1f s)\n",
                  params.trainer.c_str(), result.loss, result.reward_accuracy, result.reward_margin,
                  static_cast<long long>(result.pairs), result.data_file.c_str(),
                  result.adapter_dir.empty() ? "the base alone" : ("adapter " + result.adapter_dir).c_str(),
                  dpo ? " against its base" : "", result.seconds);
      return;
    }
    std::printf("eval loss %.6f, perplexity %.4f: %lld blocks of %lld tokens of %s, %s%s (%.1f s)\n", result.loss,
                result.perplexity, static_cast<long long>(result.blocks), static_cast<long long>(result.block_size),
                result.data_file.c_str(),
                result.adapter_dir.empty() ? "the base alone" : ("adapter " + result.adapter_dir).c_str(),
                result.gguf_type.empty() ? "" : (", base as GGUF " + result.gguf_type).c_str(), result.seconds);
  };
  return {app, run};
}

Command add_imatrix_command(CLI::App& parent) {
  auto o = std::make_shared<EvalCommandOptions>();
  CLI::App* app = parent.add_subcommand(
      "imatrix", "Importance matrix of a model (with its LoRA adapter) over a split of a dataset, for export-gguf "
                 "--imatrix: llama.cpp's llama-imatrix");
  add_scoring_options(app, o.get(), true);
  o->quantization = "none";  // unless --quantization says otherwise: a QLoRA config's int4 is for training
  app->add_option("-o,--out", o->evaluate.imatrix_out,
                  "The file to write: llama-imatrix's GGUF format (FILE.imatrix.gguf), or its legacy one for a .dat "
                  "name; llama-quantize --imatrix reads both")
      ->required();
  app->add_option("--chunks", o->evaluate.max_blocks, "Only the first N blocks of the split (llama-imatrix --chunks)")
      ->check(CLI::PositiveNumber);
  app->footer("Examples:\n"
              "  autotrain imatrix --config training_params.json --out my-llm.imatrix.gguf   (train split, adapter)\n"
              "  autotrain export-gguf --model BASE --adapter my-llm --merge --type q3_K_M "
              "--imatrix my-llm.imatrix.gguf --out my-llm.Q3_K_M.gguf\n"
              "  autotrain imatrix --model MODEL_DIR --data calibration.txt --block-size 512 --chunks 100 "
              "--out model.imatrix.gguf\n"
              "For each 2-D weight, the mean square of each input column over every token of the split's whole blocks\n"
              "(packed as train packs them), the base's weights unquantized and the adapter applied; the LM head's\n"
              "input too (llama-imatrix --process-output).");
  auto run = [o] {
    const TrainingParams params = eval_params(*o);
    EvaluateOptions options = o->evaluate;
    default_adapter(*o, params, options);
    const EvaluationResult result = run_evaluation(params, options);
    std::printf("imatrix: wrote %s: %lld weights from %lld blocks of %lld tokens of %s, %s (perplexity %.4f, "
                "%.1f s)\n",
                options.imatrix_out.c_str(), static_cast<long long>(result.imatrix_entries),
                static_cast<long long>(result.blocks), static_cast<long long>(result.block_size),
                result.data_file.c_str(),
                result.adapter_dir.empty() ? "the base alone" : ("adapter " + result.adapter_dir).c_str(),
                result.perplexity, result.seconds);
  };
  return {app, run};
}

}  // namespace autotrain::cli
