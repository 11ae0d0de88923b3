// The training loop (a flat recipe, as torchtune's): for each optimizer step, gradient_accumulation
// micro-batches of batch_size packed blocks -> summed token loss -> backward into the LoRA parameters;
// unscale (fp16), clip, skip on inf/nan (stop after max_nonfinite_steps in a row), optimizer step at the
// schedule's learning rate; log, evaluate, checkpoint. Step for step what transformers' Trainer does
// with the same settings:
//   - micro-batches per epoch = ceil(blocks / batch_size) (the last may be short); optimizer steps per
//     epoch = ceil(micro-batches / gradient_accumulation) (the last window may be short);
//   - the loss of a step is the sum of the token losses of its window divided by the number of predicted
//     tokens in the window (transformers' num_items_in_batch), so batch 5 x accumulation 4 and batch 20 x
//     accumulation 1 give the same update;
//   - blocks are shuffled each epoch by torch.randperm with a generator seeded seed + epoch (accelerate's
//     SeedableRandomSampler);
//   - the scheduler steps only when the optimizer did (a step skipped by the loss scaler does not count).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/distributed.h"
#include "autotrain/preference.h"
#include "autotrain/token_cache.h"

namespace autotrain {

// What the loop needs from the model.
struct TrainableModel {
  std::vector<std::pair<std::string, at::Tensor>> parameters;  // the trainable tensors, PEFT names
  // Sum (float32 scalar) of the token losses of a micro-batch: input_ids and labels (B, T) int64, labels
  // shifted inside as transformers does, -100 ignored.
  std::function<at::Tensor(const at::Tensor& input_ids, const at::Tensor& labels)> loss_sum;
  std::function<void(bool training)> set_training;
  // For each mask (N, T) bool, per sequence the summed log-probability (fp32, (N,)) of the tokens where it is true,
  // each predicted from the tokens before it (the first token is never scored), from one forward: what DPO and
  // ORPO compare. Differentiable, as loss_sum. The LM head runs once per mask on the tokens it scores: masks that
  // overlap pay for their shared tokens twice.
  std::function<std::vector<at::Tensor>(const at::Tensor& input_ids, const std::vector<at::Tensor>& masks)>
      sequence_logps;
  // A reward model's rewards (trainer "reward"): per sequence (N,) fp32 the score head's output at its last token
  // that is not pad_id, as transformers' *ForSequenceClassification pools it. Differentiable in the LoRA parameters
  // and the head; unset without a head (attach_reward_head, autotrain/finetune.h).
  std::function<at::Tensor(const at::Tensor& input_ids, int64_t pad_id)> sequence_rewards;
  // Off: the frozen base alone (the DPO reference), as PEFT's disable_adapter().
  std::function<void(bool enabled)> set_adapters_enabled;
  // Writes adapter_config.json + adapter_model.safetensors (the parameters' current values) into a folder.
  std::function<void(const std::string& folder)> save_adapter;
  // Where the parameters live and loss_sum computes (it takes CPU batches and moves them there); on a GPU
  // the loop also reports the GPU's memory.
  at::Device device = at::kCPU;
};

struct TrainingData {
  TokenizedText train;
  std::optional<TokenizedText> valid;
  int64_t block_size = 0;
  std::string fingerprint;  // of data + tokenizer + settings; a checkpoint only resumes the same run
};

// What the DPO trainer trains on: preference pairs (autotrain/preference.h).
struct PreferenceData {
  std::vector<PreferencePair> train;
  std::optional<std::vector<PreferencePair>> valid;
  int64_t max_length = 1024;  // of prompt + completion (block_size)
  int64_t pad_id = 0;
  double beta = 0.1;          // dpo_beta (ORPO's lambda too, as AutoTrain passes it)
  std::string loss = "dpo";   // dpo (against the reference), orpo (the policy alone) or reward (a score head)
  std::string fingerprint;
};

struct TrainerOptions {
  TrainingParams params;
  int64_t save_steps = 0;       // 0: a checkpoint at the end of every epoch
  std::string resume_from;      // a checkpoint folder; empty: the newest in project_name, if any
  bool resume = true;           // false: ignore existing checkpoints
  // Stop (with a checkpoint) after this many optimizer steps in this process; 0 = no limit. For tests of
  // resume and for users who train in slices of a rented GPU's time.
  int64_t stop_after_steps = 0;
  // Stop with an Error after this many optimizer steps in a row whose loss was NaN/inf (or, without fp16
  // loss scaling, whose gradients were). Such a step is never applied and never checkpointed, so the
  // newest checkpoint holds the last good weights. fp16 gradient overflows with a finite loss do not
  // count: the loss scaler halves the scale and skips them, as GradScaler does. 0: never stop.
  int64_t max_nonfinite_steps = 5;
  // Data parallel: with a group of W workers each micro-batch of the run is W x batch_size blocks of the
  // epoch's order, and this worker takes its rank's batch_size of them; gradients are summed across the
  // group, so W workers give the update of one process with W x batch_size. Only rank 0 writes files.
  ProcessGroup* group = nullptr;
};

struct TrainingSummary {
  int64_t steps = 0, total_steps = 0, skipped_steps = 0;
  double first_loss = 0, last_loss = 0;
  std::optional<double> eval_loss;
  bool stopped_early = false;  // by stop_after_steps or a signal; a checkpoint holds the state
  std::string output_folder;
};

// Micro-batches and optimizer steps of one epoch, as transformers counts them.
int64_t micro_batches_per_epoch(int64_t blocks, int64_t batch_size);
int64_t optimizer_steps_per_epoch(int64_t blocks, int64_t batch_size, int64_t gradient_accumulation);
// AutoTrain's automatic logging_steps (-1): 20% of an epoch's micro-batches, clamped to [1, 25].
int64_t automatic_logging_steps(int64_t blocks, int64_t batch_size);
// The block order of an epoch: torch.randperm(blocks) from a CPU generator seeded seed + epoch.
std::vector<int64_t> epoch_block_order(int64_t blocks, int64_t seed, int64_t epoch);

// Mean loss per predicted token over every whole block of `text` (block_size - 1 per block: the remainder past
// the last block is dropped, as training drops it), in micro-batches of batch_size, the model in eval mode (no
// dropout) and then back in training mode. A worker of a group evaluates every W-th block and the sums are added
// across the group. `on_batch` (optional) hears each micro-batch's blocks and the summed loss so far. The loop's
// eval_loss, and `autotrain eval`.
double evaluate(TrainableModel& model, const TokenizedText& text, int64_t block_size, int64_t batch_size,
                ProcessGroup* group = nullptr,
                const std::function<void(int64_t blocks, double loss_sum)>& on_batch = {});

// The DPO (or ORPO, or reward) loss of every pair of `pairs` in micro-batches of batch_size, the model in eval mode:
// the micro-batches' losses and rewards' accuracy and margin weighted by their pairs (eval_loss,
// eval_rewards/accuracies, eval_rewards/margins; a reward model's: eval_loss, eval_accuracy, eval_margin, as TRL's
// RewardTrainer names them), as transformers' evaluation loop averages the loss.
nlohmann::json evaluate_preference(TrainableModel& model, const std::vector<PreferencePair>& pairs,
                                   const PreferenceData& data, int64_t batch_size);

// Runs the loop; writes project_name/{adapter files, metrics.jsonl, loss_curve.svg, checkpoint-N/}.
// SIGINT / SIGTERM end it after the current step with a checkpoint, and it throws Error saying how to resume.
TrainingSummary train(TrainableModel& model, const TrainingData& data, const TrainerOptions& options);

// The same loop over preference pairs with the DPO, ORPO or reward loss (trainer "dpo" / "orpo" / "reward"): a step's
// loss is the mean of its micro-batches' losses, as TRL's DPOTrainer / ORPOTrainer / RewardTrainer under
// transformers' gradient accumulation, and
// each step's record adds what TRL logs (preference.h), averaged over the step's micro-batches. One process only
// (no data-parallel group).
TrainingSummary train_preference(TrainableModel& model, const PreferenceData& data, const TrainerOptions& options);

}  // namespace autotrain
