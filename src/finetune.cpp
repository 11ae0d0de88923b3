#include "autotrain/finetune.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <new>
#include <optional>

#include <c10/util/Logging.h>
#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/chat_template.h"
#include "autotrain/checkpoint.h"
#include "autotrain/data.h"
#include "autotrain/device.h"
#include "autotrain/distributed.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/hub_cache.h"
#include "autotrain/lm_loss.h"
#include "autotrain/logging.h"
#include "autotrain/model.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"

namespace autotrain {
namespace fs = std::filesystem;

int64_t effective_block_size(const TrainingParams& params) {
  if (params.block_size == -1) return std::min<int64_t>(params.model_max_length, 1024);
  return std::min(params.block_size, params.model_max_length);
}

at::ScalarType compute_dtype(const TrainingParams& params) {
  const std::string precision = params.mixed_precision.value_or("none");
  if (precision == "fp16") return at::kHalf;
  if (precision == "bf16") return at::kBFloat16;
  return at::kFloat;
}

ModelOptions finetune_model_options(const TrainingParams& params) {
  ModelOptions options;
  options.dtype = compute_dtype(params);
  options.quantization = parse_base_quantization(params.quantization);
  options.lora_target_modules = resolve_target_modules(params);
  // TRL's DPOTrainer, ORPOTrainer and RewardTrainer set the p of every dropout module to 0 (their configs'
  // disable_dropout, true by default and not among AutoTrain's keys), PEFT's lora_dropout included.
  const bool trl_disables_dropout = trains_on_pairs(params.trainer);
  options.lora = LoraOptions{params.lora_r, params.lora_alpha, trl_disables_dropout ? 0.0 : params.lora_dropout, false};
  options.gradient_checkpointing = !params.disable_gradient_checkpointing;
  return options;
}

std::string trl_trainer_name(const std::string& trainer) {
  if (trainer == "dpo") return "DPOTrainer";
  if (trainer == "orpo") return "ORPOTrainer";
  if (trainer == "reward") return "RewardTrainer";
  return "";
}

AdapterConfig finetune_adapter_config(const TrainingParams& params, const ModelOptions& options) {
  AdapterConfig adapter;
  adapter.lora = options.lora;
  adapter.lora.dropout = params.lora_dropout;  // PEFT's LoraConfig keeps it where TRL's trainers turned it off
  adapter.target_modules = options.lora_target_modules;
  adapter.base_model_name_or_path = params.model;
  if (params.trainer == "reward") {  // AutoTrain's LoraConfig(task_type="SEQ_CLS"): PEFT trains and saves the head
    adapter.task_type = "SEQ_CLS";
    adapter.modules_to_save = {"classifier", "score"};
  }
  return adapter;
}

std::string default_cache_dir() {
  if (const char* dir = std::getenv("AUTOTRAIN_CACHE_DIR"); dir && *dir) return dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return std::string(dir) + "/autotrain";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/autotrain";
  return ".autotrain-cache";
}

namespace {

std::vector<std::string> tokenizer_files(const std::string& model_dir) {
  std::vector<std::string> files;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                           "added_tokens.json"}) {
    if (fs::exists(model_dir + "/" + name)) files.push_back(model_dir + "/" + name);
  }
  return files;
}

// The ids AutoTrain feeds the model for one text. Default trainer: eos appended as a string when
// add_eos_token, then tokenizer(text) with its default add_special_tokens=True (bos for Llama). SFT trainer
// (TRL's packing, ConstantLengthDataset): tokenizer(text) with special tokens, then the eos id appended whatever
// add_eos_token says.
TextEncoder autotrain_encoder(const Tokenizer& tokenizer, const TrainingParams& params) {
  const bool sft = params.trainer == "sft";
  if ((params.add_eos_token || sft) && !tokenizer.eos_id())
    throw Error(params.model + ": the tokenizer has no eos token; " +
                (sft ? "the sft trainer appends it to every text: use trainer default" : "set add_eos_token to false"));
  if (sft) {
    const int64_t eos = *tokenizer.eos_id();
    return [&tokenizer, eos](const std::string& text) {
      std::vector<int64_t> ids = tokenizer.encode(text, true);
      ids.push_back(eos);
      return ids;
    };
  }
  const std::string eos_text = params.add_eos_token ? tokenizer.decode({*tokenizer.eos_id()}) : "";
  return [&tokenizer, eos_text](const std::string& text) { return tokenizer.encode(text + eos_text, true); };
}

}  // namespace

TokenizedText tokenize_split(const TrainingParams& params, const Tokenizer& tokenizer, const std::string& split,
                             const std::string& cache_dir) {
  const DataFiles data_files = resolve_split_files(params.data_path, split);
  std::vector<std::string> inputs = data_files;
  for (const auto& f : tokenizer_files(params.model)) inputs.push_back(f);
  std::optional<ChatTemplate> chat;
  if (params.chat_template == "tokenizer") {
    chat = ChatTemplate::load(params.model);
    if (chat->is_fallback()) log::info(params.model + " has no chat template: conversations are written as ChatML, as AutoTrain does");
  }
  const std::string settings = "autotrain-tokens-v2|" + params.text_column + "|" + (params.add_eos_token ? "eos" : "") +
                               "|" + params.trainer + "|" + (chat ? chat->source() : "");
  TokenCacheRequest request{data_files, params.text_column, cache_dir + "/tokens", fingerprint(inputs, settings),
                            chat ? &*chat : nullptr, params.trainer == "default"};
  return TokenizedText::open(ensure_token_cache(request, autotrain_encoder(tokenizer, params)));
}

TrainableModel trainable_model(CausalLM& model, const AdapterConfig& adapter, int64_t loss_chunk_bytes) {
  TrainableModel trainable;
  trainable.parameters = model.lora_parameters();
  const int64_t chunk_rows = lm_loss_chunk_rows(model.config().vocab_size, loss_chunk_bytes);
  trainable.device = model.device();
  trainable.loss_sum = [&model, chunk_rows](const at::Tensor& ids, const at::Tensor& labels) {
    // transformers' ForCausalLMLoss with reduction sum: labels padded with -100 and shifted left; the logits
    // a chunk of tokens at a time (lm_head_loss_sum), never all of them at once.
    at::Tensor shifted = at::constant_pad_nd(labels.to(model.device()), {0, 1}, -100).slice(1, 1);
    return lm_head_loss_sum(model.hidden_states(ids), model.lm_head(), shifted.reshape(-1), chunk_rows);
  };
  trainable.sequence_logps = [&model, chunk_rows](const at::Tensor& ids, const std::vector<at::Tensor>& masks) {
    // Each sequence's -(summed token loss) over the mask's tokens: the same chunked loss, a row at a time, on the
    // positions that predict a masked token only, so the LM head never runs on what no mask scores (a DPO prompt,
    // the padding).
    const at::Tensor hidden = model.hidden_states(ids);
    const at::Tensor next_ids = at::constant_pad_nd(ids, {0, 1}, 0).slice(1, 1).to(model.device());
    std::vector<at::Tensor> sums;
    for (const at::Tensor& mask : masks) {
      // Position t predicts token t + 1: it is scored when that token is masked.
      const at::Tensor scored = at::constant_pad_nd(mask.to(at::kBool), {0, 1}, 0).slice(1, 1).to(model.device());
      std::vector<at::Tensor> logps;
      for (int64_t i = 0; i < ids.size(0); ++i) {
        const at::Tensor positions = scored[i].nonzero().squeeze(1);
        logps.push_back(positions.numel() == 0
                            ? at::zeros({}, hidden.options().dtype(at::kFloat))
                            : -lm_head_loss_sum(hidden[i].index_select(0, positions), model.lm_head(),
                                                next_ids[i].index_select(0, positions), chunk_rows));
      }
      sums.push_back(at::stack(logps));
    }
    return sums;
  };
  trainable.set_training = [&model](bool training) { model.set_training(training); };
  trainable.set_adapters_enabled = [&model](bool enabled) { model.set_adapters_enabled(enabled); };
  trainable.save_adapter = [&model, adapter](const std::string& folder) {
    save_adapter(folder, adapter, model.lora_parameters());
  };
  return trainable;
}

at::Tensor new_score_head(const CausalLM& model) {
  const ModelConfig& config = model.config();
  return at::normal(0.0, config.initializer_range, {1, config.hidden_size}, std::nullopt, at::kFloat)
      .to(model.device())
      .set_requires_grad(true);
}

void attach_reward_head(TrainableModel& trainable, CausalLM& model, const AdapterConfig& adapter, at::Tensor score) {
  trainable.parameters.emplace_back(kScoreTensorName, score);
  trainable.sequence_rewards = [&model, score](const at::Tensor& ids, int64_t pad_id) {
    // transformers pools at the rightmost token that is not the pad token (index 0 when every token is one); the
    // padding is on the right, so no position up to it attends to any.
    const at::Tensor hidden = model.hidden_states(ids);
    const at::Tensor on_device = ids.to(model.device());
    const at::Tensor positions = at::arange(ids.size(1), on_device.options()).mul(on_device.ne(pad_id)).argmax(1);
    const at::Tensor last = hidden.index({at::arange(ids.size(0), positions.options()), positions});
    return at::matmul(last.to(at::kFloat), score.t()).squeeze(1);
  };
  trainable.save_adapter = [&model, adapter, score](const std::string& folder) {
    auto tensors = model.lora_parameters();
    tensors.emplace_back(kScoreTensorName, score);
    save_adapter(folder, adapter, tensors);
  };
}

PreferenceData preference_settings(const TrainingParams& params, const Tokenizer& tokenizer, int64_t block_size) {
  PreferenceData data;
  data.max_length = block_size;
  data.beta = params.dpo_beta;
  data.loss = params.trainer;
  // TRL pads with the tokenizer's pad token, else its eos; the padding is never attended to nor scored.
  data.pad_id = tokenizer.pad_or_eos_id().value_or(0);
  return data;
}

PreferenceLimits preference_limits(const TrainingParams& params, int64_t block_size) {
  return {block_size, params.max_prompt_length, params.max_completion_length};
}

PreferenceData read_preference_data(const TrainingParams& params, const Tokenizer& tokenizer, int64_t block_size) {
  const PreferenceLimits limits = preference_limits(params, block_size);
  PreferenceData data = preference_settings(params, tokenizer, block_size);
  std::vector<std::string> inputs;
  auto read_split = [&](const std::string& split) {
    for (const std::string& file : resolve_split_files(params.data_path, split)) inputs.push_back(file);
    return read_preference_split(params, tokenizer, split, limits);
  };
  data.train = read_split(params.train_split);
  if (params.valid_split) data.valid = read_split(*params.valid_split);
  for (const auto& f : tokenizer_files(params.model)) inputs.push_back(f);
  data.fingerprint = fingerprint(inputs, "autotrain-pairs-v1");
  return data;
}

TrainingSummary run_finetune(const TrainingParams& given, const FinetuneOptions& options) {
  // A Hub id is read from the local Hugging Face cache; the adapter and training_params.json record it as given,
  // as PEFT and AutoTrain do.
  TrainingParams params = given;
  params.model = resolve_model_folder(given.model);
  std::unique_ptr<ProcessGroup> group;
  const std::optional<WorkerPlace> place = worker_place_from_environment();
  const int world_size = place ? place->world_size : 1;
  if (world_size > 1 && place->rank != 0) log::quiet_to_warnings();
  // Before at::manual_seed: the CUDA backend must be loaded before torch is asked about CUDA, and then the
  // seed reaches the GPU's generator too, which LoRA dropout on the GPU draws from.
  const at::Device device = select_device(options.device, world_size);
  log::info("device: " + describe_device(device));
  if (world_size > 1) group = ProcessGroup::connect(*place, std::chrono::seconds(options.ddp_timeout_seconds));
  at::manual_seed(static_cast<uint64_t>(params.seed));
  const std::string cache_dir = options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
  auto tokenizer = Tokenizer::load(params.model);
  const int64_t block_size = effective_block_size(params);

  std::optional<TrainingData> data;
  std::optional<PreferenceData> pairs;
  if (trains_on_pairs(params.trainer)) {
    if (group)
      throw Error("trainer \"" + params.trainer +
                  "\" runs in one process; data-parallel workers are not supported yet");
    pairs = read_preference_data(params, *tokenizer, block_size);
  } else {
    // One worker per machine tokenizes into the cache while the others wait, then read it.
    const bool tokenizes_first = !group || place->local_rank == 0;
    if (group && !tokenizes_first) group->barrier();
    data.emplace(TrainingData{tokenize_split(params, *tokenizer, params.train_split, cache_dir), std::nullopt,
                              block_size, ""});
    if (data->train.num_blocks(block_size) == 0) {  // before the model is loaded: say it at once
      throw Error(files_label(resolve_split_files(params.data_path, params.train_split)) + ": " +
                  std::to_string(data->train.size()) + " tokens, fewer than one block of block_size " +
                  std::to_string(block_size) +
                  " (the remainder is dropped, as AutoTrain does); lower block_size or add texts");
    }
    if (params.valid_split) data->valid = tokenize_split(params, *tokenizer, *params.valid_split, cache_dir);
    if (group && tokenizes_first) group->barrier();
    if (data->valid && data->valid->num_blocks(block_size) == 0) {
      throw Error(files_label(resolve_split_files(params.data_path, *params.valid_split)) +
                  ": the validation split has fewer than " +
                  std::to_string(block_size) + " tokens, so not one block; add texts or set valid_split to null");
    }
  }

  ModelOptions model_options = finetune_model_options(params);
  model_options.device = device;
  if (params.lora_dropout > 0 && model_options.lora.dropout == 0)
    log::info(log::cat("trainer ", params.trainer, ": lora_dropout ", params.lora_dropout,
                       " is off while training, as TRL's ", trl_trainer_name(params.trainer),
                       " runs it (disable_dropout); adapter_config.json records it"));
  std::optional<ModelConfig> model_config;
  // One attempt: a fresh model (the same LoRA initialisation as a first try) trained with `attempt_params`.
  auto attempt = [&](const TrainingParams& attempt_params, bool resume) {
    at::manual_seed(static_cast<uint64_t>(params.seed));
    log::info("loading " + params.model);
    CausalLM model(params.model, model_options);
    model_config = model.config();

    // Everything that changes the updates: a checkpoint resumes only a run with the same fingerprint. Keys
    // that only change logging or what happens after training may differ.
    auto settings = to_json(attempt_params);
    for (const char* key : {"merge_adapter", "logging_steps", "save_total_limit", "log", "project_name"})
      settings.erase(key);
    const std::string run = fingerprint({}, std::to_string(data ? data->train.size() : pairs->train.size()) + "|" +
                                                std::to_string(block_size) + "|" + settings.dump());
    AdapterConfig adapter = finetune_adapter_config(attempt_params, model_options);
    adapter.base_model_name_or_path = given.model;
    TrainableModel trainable = trainable_model(model, adapter);
    // A reward model's head is new, drawn as transformers draws a head the checkpoint lacks, and trained in full.
    if (params.trainer == "reward") attach_reward_head(trainable, model, adapter, new_score_head(model));
    TrainingParams recorded = attempt_params;
    recorded.model = given.model;
    if (!group || group->rank() == 0) save_training_params(recorded, params.project_name);
    TrainerOptions trainer_options{attempt_params, options.save_steps, options.resume_from, resume,
                                   options.stop_after_steps};
    trainer_options.group = group.get();
    if (pairs) {
      PreferenceData run_pairs = *pairs;  // copied: an attempt of auto_find_batch_size may follow
      run_pairs.fingerprint = run + "|" + pairs->fingerprint;
      return train_preference(trainable, run_pairs, trainer_options);
    }
    data->fingerprint = run;
    return train(trainable, *data, trainer_options);
  };
  auto advice = [&](const TrainingParams& p) {
    const ExecutionTarget target = device.is_cuda() ? ExecutionTarget::cuda : ExecutionTarget::cpu;
    return model_config ? out_of_memory_advice(*model_config, run_shape(p, target)) : std::string();
  };
  // A retry with another batch_size cannot resume this run's checkpoints; it starts afresh only when this
  // run did not resume one, so that nothing trained earlier is thrown away.
  // Nor does a worker of a group: the others would not retry with it.
  const bool resuming = options.resume && (!options.resume_from.empty() || newest_checkpoint(params.project_name));
  return train_finding_batch_size(params, options.resume, !resuming && !group, attempt, advice);
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  if (!error) return false;
  const std::string message = error->what_without_backtrace();
  return message.find("out of memory") != std::string::npos || message.find("can't allocate memory") != std::string::npos;
}

TrainingSummary train_finding_batch_size(TrainingParams params, bool resume, bool may_retry,
                                         const std::function<TrainingSummary(const TrainingParams&, bool)>& attempt,
                                         const std::function<std::string(const TrainingParams&)>& advice) {
  // The torch wheel's libc10 starts with this flag set (Python clears it), and then a failed CPU
  // allocation is a LOG(FATAL) and abort() instead of the c10::Error caught here.
  FLAGS_caffe2_use_fatal_for_enforce = false;
  while (true) {
    try {
      return attempt(params, resume);
    } catch (const std::exception& e) {
      if (!is_out_of_memory(e)) throw;
      const bool retry = params.auto_find_batch_size && params.batch_size > 1 && may_retry;
      const std::string where = log::cat("out of memory at batch_size ", params.batch_size, " x gradient_accumulation ",
                                         params.gradient_accumulation);
      const std::string hint = advice(params);
      if (!retry) {
        throw Error(where + (hint.empty() ? "" : "; " + hint) +
                    (params.auto_find_batch_size && !may_retry ? " (auto_find_batch_size does not retry a resumed run)"
                                                               : ""));
      }
      params.batch_size /= 2;
      params.gradient_accumulation *= 2;
      resume = false;  // the attempt that failed may have left checkpoints of the other batch_size
      log::warn(log::cat(where, "; auto_find_batch_size: trying batch_size ", params.batch_size,
                         " x gradient_accumulation ", params.gradient_accumulation, " (the same effective batch)"));
    }
  }
}

}  // namespace autotrain
