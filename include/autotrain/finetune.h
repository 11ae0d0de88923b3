// `autotrain train`, top to bottom: training_params.json -> tokenizer -> token cache -> model with LoRA
// (frozen base in NF4 / int8 / fp16 / bf16 / fp32) -> the training loop -> PEFT adapter in project_name/.
#pragma once

#include <exception>
#include <functional>
#include <string>

#include "autotrain/adapter.h"
#include "autotrain/config.h"
#include "autotrain/lm_loss.h"
#include "autotrain/model.h"
#include "autotrain/tokenizer.h"
#include "autotrain/trainer.h"

namespace autotrain {

struct FinetuneOptions {
  int64_t save_steps = 0;      // 0: a checkpoint every epoch
  std::string resume_from;     // a checkpoint folder; empty: the newest in project_name
  bool resume = true;
  int64_t stop_after_steps = 0;
  std::string cache_dir;       // token caches; empty: $AUTOTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/autotrain, else ~/.cache/autotrain
  // A distributed worker (RANK / WORLD_SIZE in the environment) gives up on a collective or the rendezvous
  // after this long (transformers' ddp_timeout default).
  int64_t ddp_timeout_seconds = 1800;
  std::string device = "auto";  // auto, cpu or cuda (select_device in autotrain/device.h)
};

// The block size AutoTrain would use: block_size -1 -> min(model_max_length, 1024), else
// min(block_size, model_max_length).
int64_t effective_block_size(const TrainingParams& params);

// The compute dtype of mixed_precision: fp16 -> Half, bf16 -> BFloat16, none/null -> Float.
at::ScalarType compute_dtype(const TrainingParams& params);

std::string default_cache_dir();

// The model settings `train` uses for params: compute dtype, quantization, LoRA targets and options,
// gradient checkpointing (on unless disable_gradient_checkpointing). Trainers dpo, orpo and reward train with LoRA
// dropout off, as TRL's DPOTrainer, ORPOTrainer and RewardTrainer (which AutoTrain runs for them) do by default
// (disable_dropout).
ModelOptions finetune_model_options(const TrainingParams& params);
// TRL's trainer class that AutoTrain runs for `trainer` (dpo: DPOTrainer, orpo: ORPOTrainer, reward:
// RewardTrainer); empty for the default and sft trainers, which train on packed blocks.
std::string trl_trainer_name(const std::string& trainer);
// Trainers dpo, orpo and reward: they train on preference pairs (those TRL trainers), not on packed blocks.
inline bool trains_on_pairs(const std::string& trainer) { return !trl_trainer_name(trainer).empty(); }
// The PEFT adapter settings written for a model built with `options`, with params' lora_dropout (as PEFT's
// adapter_config.json records it where TRL trained without it); trainer reward: task_type SEQ_CLS with the score
// head among modules_to_save, as AutoTrain's LoraConfig and PEFT make it.
AdapterConfig finetune_adapter_config(const TrainingParams& params, const ModelOptions& options);

// The token ids of a split as AutoTrain's default trainer makes them (eos appended as text, then the
// tokenizer with its special tokens), from the token cache in cache_dir/tokens or tokenized into it.
TokenizedText tokenize_split(const TrainingParams& params, const Tokenizer& tokenizer, const std::string& split,
                             const std::string& cache_dir);

// Trainers dpo, orpo and reward: the pairs of the train and valid splits (read_preference_split, max_length
// block_size, AutoTrain's max_prompt_length / max_completion_length), dpo_beta, and the pad id (the tokenizer's pad
// token, else its eos).
PreferenceData read_preference_data(const TrainingParams& params, const Tokenizer& tokenizer, int64_t block_size);
// The same without pairs: max_length, beta and pad id; and the limits read_preference_split takes.
PreferenceData preference_settings(const TrainingParams& params, const Tokenizer& tokenizer, int64_t block_size);
PreferenceLimits preference_limits(const TrainingParams& params, int64_t block_size);

// The loop's view of a model with LoRA: its LoRA parameters, transformers' causal-LM loss (sum, the
// batch moved to the model's device; lm_head_loss_sum with chunks of loss_chunk_bytes of fp32 logits), and
// the PEFT adapter writer for `adapter`'s settings.
TrainableModel trainable_model(CausalLM& model, const AdapterConfig& adapter,
                               int64_t loss_chunk_bytes = lm_loss_chunk_bytes());

// Trainer reward: a new score head (kScoreTensorName, autotrain/adapter.h): (1, hidden_size) fp32 on the model's
// device, drawn from normal(0, initializer_range) by the default generator, as transformers initialises a head the
// checkpoint lacks.
at::Tensor new_score_head(const CausalLM& model);
// Makes `trainable` a reward model: `score` joins its parameters (last, after the LoRA matrices), sequence_rewards
// scores sequences with it, and save_adapter writes it beside the LoRA matrices (adapter's SEQ_CLS settings).
void attach_reward_head(TrainableModel& trainable, CausalLM& model, const AdapterConfig& adapter, at::Tensor score);

// Tokenizes, loads the model and trains, in this process or as one worker of a data-parallel job when
// RANK and WORLD_SIZE are set. Out of memory, it throws Error with the estimator's breakdown and changes
// that lower the peak, or with auto_find_batch_size retries (train_finding_batch_size; one process only).
TrainingSummary run_finetune(const TrainingParams& params, const FinetuneOptions& options);

// True for std::bad_alloc, c10::OutOfMemoryError and a c10::Error from an allocator that failed.
bool is_out_of_memory(const std::exception& e);

// Runs attempt(params, resume). When it runs out of memory: with auto_find_batch_size, batch_size > 1 and
// may_retry, halves batch_size and doubles gradient_accumulation (the same effective batch, as
// transformers' auto_find_batch_size halves the batch; exactly the same when batch_size is even) and
// tries again, afresh; otherwise throws Error
// "out of memory at batch_size B x gradient_accumulation G; " + advice(params).
TrainingSummary train_finding_batch_size(TrainingParams params, bool resume, bool may_retry,
                                         const std::function<TrainingSummary(const TrainingParams&, bool)>& attempt,
                                         const std::function<std::string(const TrainingParams&)>& advice);

}  // namespace autotrain
