#include "autotrain/evaluate.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/data.h"
#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/hub_cache.h"
#include "autotrain/imatrix.h"
#include "autotrain/logging.h"
#include "autotrain/model.h"
#include "autotrain/progress.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"
#include "autotrain/trainer.h"

namespace autotrain {

EvaluationResult run_evaluation(const TrainingParams& given, const EvaluateOptions& options) {
  TrainingParams params = given;
  params.model = resolve_model_folder(given.model);  // a Hub id: its snapshot in the local Hugging Face cache
  const bool imatrix = !options.imatrix_out.empty();
  const char* command = imatrix ? "imatrix" : "eval";
  // The importance matrix of a run's model is taken on the data it was trained on, unless told otherwise.
  const std::string split =
      !options.split.empty() ? options.split : imatrix ? params.train_split : params.valid_split.value_or("");
  if (split.empty())
    throw config_error("eval: no split to score: give --split (e.g. --split train), or valid_split in the config");
  if (imatrix && trains_on_pairs(params.trainer))
    throw config_error("imatrix: trainer " + params.trainer + " scores preference pairs; the importance matrix is "
                       "taken over texts: give --trainer default (or sft) and a text column");
  if (imatrix && options.gguf_type)
    throw config_error("imatrix: --gguf-type: the importance matrix is taken on the unquantized weights that "
                       "export-gguf quantizes");
  EvaluationResult result;
  result.model = given.model;
  result.adapter_dir = options.adapter_dir;
  if (options.gguf_type) result.gguf_type = gguf_type_name(*options.gguf_type);
  result.data_file = files_label(resolve_split_files(params.data_path, split));
  result.block_size = effective_block_size(params);
  const int64_t batch_size = options.batch_size > 0 ? options.batch_size : params.batch_size;

  // The adapter's settings first: a folder that is not one is said before the model is loaded.
  std::optional<AdapterConfig> adapter;
  if (!options.adapter_dir.empty()) adapter = load_adapter_config(options.adapter_dir);
  const at::Device device = select_device(options.device);
  log::info("device: " + describe_device(device));
  auto tokenizer = Tokenizer::load(params.model);
  ModelOptions model_options = finetune_model_options(params);
  model_options.device = device;
  model_options.gradient_checkpointing = false;  // no backward
  model_options.lora_target_modules.clear();
  if (imatrix && model_options.quantization != BaseQuantization::none)
    log::info("imatrix: the statistics of the base quantized to " + params.quantization.value_or("none") +
              " (--quantization), close to those of the unquantized weights export-gguf reads");
  if (options.gguf_type) {  // llama.cpp's weights: the GGUF type's quantization, not the config's
    log::info("the base's weights as GGUF " + result.gguf_type + " stores them (export-gguf's types; quantization " +
              "none)");
    model_options.quantization = BaseQuantization::none;
    model_options.weight_transform = gguf_round_trip(params.model, *options.gguf_type, options.imatrix_file);
  }
  if (adapter) {
    model_options.lora_target_modules = adapter->target_modules;
    model_options.lora = adapter->lora;
  }
  auto load_model = [&] {
    log::info("loading " + params.model + (adapter ? " with the adapter in " + options.adapter_dir : ""));
    CausalLM model(params.model, model_options);
    if (adapter && !adapter->is_reward_model()) load_adapter_weights(options.adapter_dir, model.lora_parameters());
    return model;
  };
  const bool reward = params.trainer == "reward";
  if (adapter && adapter->is_reward_model() != reward)
    throw config_error("eval: " + options.adapter_dir + " holds " +
                       (reward ? "a language model's adapter (task_type " + adapter->task_type +
                                     "), not a reward model's: score it with another trainer"
                               : std::string("a reward model (task_type SEQ_CLS): score it with --trainer reward")));

  if (trains_on_pairs(params.trainer)) {
    if (!adapter && (params.trainer == "dpo" || reward))
      throw config_error(reward ? "eval: trainer reward scores with a trained reward head; give --adapter DIR (a "
                                  "reward adapter), or a config whose project_name holds one"
                                : "eval: trainer dpo scores an adapter against its base model (the DPO reference); "
                                  "give --adapter DIR, or a config whose project_name holds one");
    const std::vector<PreferencePair> pairs =
        read_preference_split(params, *tokenizer, split, preference_limits(params, result.block_size));
    CausalLM model = load_model();
    TrainableModel scorer = trainable_model(model, adapter.value_or(AdapterConfig{}));
    if (reward) {  // the head and the LoRA matrices, as the adapter holds them
      attach_reward_head(scorer, model, *adapter, at::zeros({1, model.config().hidden_size}, at::kFloat).to(device));
      load_adapter_weights(options.adapter_dir, scorer.parameters);
    }
    const auto start = std::chrono::steady_clock::now();
    const nlohmann::json scores =
        evaluate_preference(scorer, pairs, preference_settings(params, *tokenizer, result.block_size), batch_size);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.preference = true;
    result.pairs = static_cast<int64_t>(pairs.size());
    result.loss = scores["eval_loss"];
    result.perplexity = std::nan("");
    result.reward_accuracy = scores[reward ? "eval_accuracy" : "eval_rewards/accuracies"];
    result.reward_margin = scores[reward ? "eval_margin" : "eval_rewards/margins"];
    return result;
  }

  TokenizedText text =
      tokenize_split(params, *tokenizer, split, options.cache_dir.empty() ? default_cache_dir() : options.cache_dir);
  if (options.max_blocks > 0) text = text.first(options.max_blocks * result.block_size);
  result.tokens = text.size();
  result.blocks = text.num_blocks(result.block_size);
  if (result.blocks == 0) {
    throw Error(result.data_file + ": " + std::to_string(text.size()) + " tokens, fewer than one block of block_size " +
                std::to_string(result.block_size) + "; lower block_size or score a larger split");
  }
  result.predicted_tokens = result.blocks * (result.block_size - 1);

  CausalLM model = load_model();
  TrainableModel scorer = trainable_model(model, adapter.value_or(AdapterConfig{}));
  ImatrixCollector collector(model.config().tie_word_embeddings);
  if (imatrix) model.set_activation_observer(&collector);

  log::info(log::cat(imatrix ? "imatrix: " : "", "scoring ", result.blocks, " blocks of ", result.block_size,
                     " tokens of ", result.data_file, " (", result.tokens - result.blocks * result.block_size,
                     " tokens past the last block dropped)"));
  ProgressBar progress(command, result.blocks * result.block_size, "tok");
  int64_t scored_blocks = 0;
  const auto start = std::chrono::steady_clock::now();
  result.loss = evaluate(scorer, text, result.block_size, batch_size, nullptr, [&](int64_t blocks, double loss_sum) {
    scored_blocks += blocks;
    std::string status = log::cat("loss ", loss_sum / static_cast<double>(scored_blocks * (result.block_size - 1)));
    if (device.is_cuda())
      status += " | gpu " + format_count(static_cast<double>(gpu_memory_in_use_bytes(device))) + "B";
    progress.set_status(status);
    progress.advance(blocks * result.block_size);
  });
  progress.finish();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.perplexity = std::exp(result.loss);
  if (imatrix) {
    model.set_activation_observer(nullptr);
    result.imatrix_entries = collector.save(options.imatrix_out, result.data_file, result.blocks, result.block_size);
  }
  return result;
}

nlohmann::json to_json(const EvaluationResult& r) {
  const nlohmann::json adapter = r.adapter_dir.empty() ? nlohmann::json() : nlohmann::json(r.adapter_dir);
  const nlohmann::json gguf_type = r.gguf_type.empty() ? nlohmann::json() : nlohmann::json(r.gguf_type);
  if (r.preference) {
    return {{"model", r.model},           {"adapter", adapter},
            {"gguf_type", gguf_type},
            {"data_file", r.data_file},   {"block_size", r.block_size},
            {"pairs", r.pairs},           {"loss", r.loss},
            {"reward_accuracy", r.reward_accuracy}, {"reward_margin", r.reward_margin},
            {"seconds", r.seconds}};
  }
  return {{"model", r.model},
          {"adapter", adapter},
          {"gguf_type", gguf_type},
          {"data_file", r.data_file},
          {"block_size", r.block_size},
          {"blocks", r.blocks},
          {"tokens", r.tokens},
          {"predicted_tokens", r.predicted_tokens},
          {"loss", r.loss},
          {"perplexity", r.perplexity},
          {"seconds", r.seconds}};
}

}  // namespace autotrain
