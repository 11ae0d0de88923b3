#include "autotrain/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "autotrain/checkpoint.h"
#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/logging.h"
#include "autotrain/loss_scaler.h"
#include "autotrain/metrics.h"
#include "autotrain/optimizer.h"
#include "autotrain/profiling.h"
#include "autotrain/progress.h"
#include "autotrain/scheduler.h"
#include "autotrain/tensorboard.h"

namespace autotrain {
namespace {

std::atomic<int> g_stop_signal{0};
// The first SIGINT / SIGTERM asks the loop to stop after the current step (with a checkpoint); a second one
// exits at once: checkpoints are renamed into place only when complete, so none is left half-written.
extern "C" void on_stop_signal(int signal) {
  if (g_stop_signal.exchange(signal) != 0) ::_exit(128 + signal);
}

// Installs the SIGINT / SIGTERM handlers for the loop's lifetime and puts the previous ones back.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    previous_int_ = std::signal(SIGINT, on_stop_signal);
    previous_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  int received() const { return g_stop_signal.load(); }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

// Micro-batch `index` of an epoch: the examples order[index*B, min((index+1)*B, n)).
std::vector<int64_t> micro_batch_indices(const std::vector<int64_t>& order, int64_t index, int64_t batch_size) {
  const auto begin = static_cast<size_t>(std::min<int64_t>(index * batch_size, static_cast<int64_t>(order.size())));
  const auto end = std::min(begin + static_cast<size_t>(batch_size), order.size());
  return std::vector<int64_t>(order.begin() + static_cast<std::ptrdiff_t>(begin),
                              order.begin() + static_cast<std::ptrdiff_t>(end));
}

// The blocks `indices` of a packed text stacked to (b, T).
at::Tensor stack_blocks(const TokenizedText& text, const std::vector<int64_t>& indices, int64_t block_size) {
  std::vector<at::Tensor> blocks;
  for (const int64_t i : indices) blocks.push_back(text.block(i, block_size));
  return at::stack(blocks);
}

// Tokens whose next token is predicted: the labels after the shift that are not -100.
int64_t predicted_tokens(const at::Tensor& labels) {
  return labels.slice(1, 1).ne(-100).sum().item<int64_t>();
}

}  // namespace

double evaluate(TrainableModel& model, const TokenizedText& text, int64_t block_size, int64_t batch_size,
                ProcessGroup* group, const std::function<void(int64_t blocks, double loss_sum)>& on_batch) {
  at::NoGradGuard no_grad;
  model.set_training(false);
  const int64_t blocks = text.num_blocks(block_size);
  const int64_t stride = group ? group->size() : 1;
  std::vector<int64_t> order;
  for (int64_t i = group ? group->rank() : 0; i < blocks; i += stride) order.push_back(i);
  double loss_sum = 0;
  int64_t tokens = 0;
  for (int64_t m = 0; m < micro_batches_per_epoch(static_cast<int64_t>(order.size()), batch_size); ++m) {
    at::Tensor ids = stack_blocks(text, micro_batch_indices(order, m, batch_size), block_size);
    loss_sum += model.loss_sum(ids, ids).item<double>();
    tokens += predicted_tokens(ids);
    if (on_batch) on_batch(ids.size(0), loss_sum);
  }
  if (group) {
    at::Tensor sums = at::tensor({loss_sum, static_cast<double>(tokens)}, at::kDouble);
    group->all_reduce_sum(sums);
    loss_sum = sums[0].item<double>();
    tokens = static_cast<int64_t>(sums[1].item<double>());
  }
  model.set_training(true);
  return tokens ? loss_sum / static_cast<double>(tokens) : std::nan("");
}

namespace {

// The examples of a run's micro-batch (W x batch_size of them) that worker `rank` computes; may be none when
// the epoch's last micro-batch is short.
std::vector<int64_t> worker_share(const std::vector<int64_t>& run_batch, int64_t rank, int64_t batch_size) {
  return micro_batch_indices(run_batch, rank, batch_size);
}

// Sums of the numbers a micro-batch reports besides its loss (DPO's rewards), averaged over the step's
// micro-batches as TRL averages what it logs.
using MetricSums = std::map<std::string, double>;

// What the loop trains on: `examples` per epoch (blocks of a packed text, or preference pairs), in micro-batches.
struct Objective {
  int64_t examples = 0;
  std::string description;  // for the log: "117 blocks of 16 tokens"
  std::string unit;         // what a micro-batch holds batch_size of: "blocks", "pairs"
  // Of a run's micro-batch (every worker's examples): its part of the divisor of the step's loss (the tokens a
  // block batch predicts; 1 for a batch of pairs, whose loss is a mean), and its tokens (for tokens/s).
  std::function<double(const std::vector<int64_t>&)> weight;
  std::function<int64_t(const std::vector<int64_t>&)> tokens;
  // The loss of this worker's examples (to be divided by the window's summed weight); adds its metrics to sums.
  std::function<at::Tensor(const std::vector<int64_t>&, MetricSums&)> loss;
  // The validation record ({"eval_loss": ...}); null without a validation split.
  std::function<nlohmann::json()> evaluate;
};

TrainingSummary run_loop(TrainableModel& model, const Objective& objective, const std::string& fingerprint,
                         const TrainerOptions& options);

// The error that ends a run after `streak` non-finite steps in a row, the last being `step`.
Error nonfinite_stop(int64_t step, int64_t streak, const std::string& project, bool fp16) {
  const auto checkpoint = newest_checkpoint(project);
  return Error(log::cat("steps ", step - streak + 1, "-", step, ": the loss or the gradients were NaN/inf ", streak,
                        " steps in a row; stopped without applying them. ",
                        checkpoint ? "The last good checkpoint is " + *checkpoint : "No checkpoint was written before",
                        "; lower lr or max_grad_norm, check the data of these steps",
                        fp16 ? ", or use mixed_precision bf16" : "", ", and train again"));
}

}  // namespace

int64_t micro_batches_per_epoch(int64_t blocks, int64_t batch_size) { return (blocks + batch_size - 1) / batch_size; }

int64_t optimizer_steps_per_epoch(int64_t blocks, int64_t batch_size, int64_t gradient_accumulation) {
  const int64_t micro = micro_batches_per_epoch(blocks, batch_size);
  return std::max<int64_t>((micro + gradient_accumulation - 1) / gradient_accumulation, 1);
}

int64_t automatic_logging_steps(int64_t blocks, int64_t batch_size) {
  return std::clamp<int64_t>(static_cast<int64_t>(0.2 * static_cast<double>(blocks) / static_cast<double>(batch_size)), 1, 25);
}

std::vector<int64_t> epoch_block_order(int64_t blocks, int64_t seed, int64_t epoch) {
  at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(seed + epoch));
  at::Tensor order = at::randperm(blocks, generator, at::kLong);
  return std::vector<int64_t>(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + blocks);
}

TrainingSummary train(TrainableModel& model, const TrainingData& data, const TrainerOptions& options) {
  const TrainingParams& p = options.params;
  ProcessGroup* group = options.group;
  const int64_t blocks = data.train.num_blocks(data.block_size);
  if (blocks == 0) {
    throw Error(p.data_path + ": " + std::to_string(data.train.size()) + " tokens make no block of block_size " +
                std::to_string(data.block_size) + "; lower block_size or add data");
  }
  const int64_t block_size = data.block_size;
  Objective objective;
  objective.examples = blocks;
  objective.description = log::cat(blocks, " blocks of ", block_size, " tokens");
  objective.unit = "blocks";
  // Every token of a block but the first is predicted (a block holds no -100).
  objective.weight = [block_size](const std::vector<int64_t>& indices) {
    return static_cast<double>(static_cast<int64_t>(indices.size()) * (block_size - 1));
  };
  objective.tokens = [block_size](const std::vector<int64_t>& indices) {
    return static_cast<int64_t>(indices.size()) * block_size;
  };
  objective.loss = [&](const std::vector<int64_t>& indices, MetricSums&) {
    const at::Tensor ids = stack_blocks(data.train, indices, block_size);
    return model.loss_sum(ids, ids);
  };
  if (data.valid) {
    objective.evaluate = [&] {
      const double loss = evaluate(model, *data.valid, block_size, p.batch_size, group);
      return nlohmann::json{{"eval_loss", loss}, {"eval_perplexity", std::exp(loss)}};
    };
  }
  return run_loop(model, objective, data.fingerprint, options);
}

namespace {

// A batch of pairs' loss: DPO against the reference (adapters disabled, no gradient), or ORPO from the policy alone.
PreferenceLoss batch_preference_loss(TrainableModel& model, const PreferenceBatch& batch, const PreferenceData& data) {
  if (data.loss == "reward") {
    const std::vector<at::Tensor> halves = model.sequence_rewards(batch.input_ids, data.pad_id).chunk(2);
    return reward_loss(halves[0], halves[1]);
  }
  if (data.loss == "orpo") {
    // The completions, and the rest of each sequence (the prompt): disjoint, so every token's logits are made once.
    const at::Tensor prompts = batch.attention_mask.logical_and(batch.completion_mask.logical_not());
    const std::vector<at::Tensor> sums = model.sequence_logps(batch.input_ids, {batch.completion_mask, prompts});
    // Completion tokens scored per sequence (at least 1: TRL's 0 / 0 would make the micro-batch's gradients NaN).
    const at::Tensor counts = batch.completion_mask.slice(1, 1).sum(1).clamp_min(1).to(sums[0].device(), at::kFloat);
    const at::Tensor means = sums[0] / counts;
    const int64_t pairs = batch.input_ids.size(0) / 2;
    // The chosen sequences' mean token loss: every token but each sequence's first is predicted.
    const double chosen_tokens =
        batch.attention_mask.slice(0, 0, pairs).sum().item<double>() - static_cast<double>(pairs);
    const at::Tensor nll = -(sums[0] + sums[1]).slice(0, 0, pairs).sum() / chosen_tokens;
    return orpo_loss(means.slice(0, 0, pairs), means.slice(0, pairs), nll, data.beta);
  }
  at::Tensor reference;
  {
    at::NoGradGuard no_grad;
    model.set_adapters_enabled(false);
    try {
      reference = model.sequence_logps(batch.input_ids, {batch.completion_mask})[0];
    } catch (...) {
      model.set_adapters_enabled(true);
      throw;
    }
    model.set_adapters_enabled(true);
  }
  const at::Tensor policy = model.sequence_logps(batch.input_ids, {batch.completion_mask})[0];
  const auto policy_halves = policy.chunk(2), reference_halves = reference.chunk(2);
  return dpo_loss(policy_halves[0], policy_halves[1], reference_halves[0], reference_halves[1], data.beta);
}

// Tokens of a pair's two sequences as the collator cuts them.
int64_t pair_tokens(const PreferencePair& pair, int64_t max_length) {
  const auto prompt = static_cast<int64_t>(pair.prompt.size());
  const auto rejected_prompt =
      pair.rejected_prompt.empty() ? prompt : static_cast<int64_t>(pair.rejected_prompt.size());
  return std::min(prompt + static_cast<int64_t>(pair.chosen.size()), max_length) +
         std::min(rejected_prompt + static_cast<int64_t>(pair.rejected.size()), max_length);
}

}  // namespace

nlohmann::json evaluate_preference(TrainableModel& model, const std::vector<PreferencePair>& pairs,
                                   const PreferenceData& data, int64_t batch_size) {
  at::NoGradGuard no_grad;
  model.set_training(false);
  std::vector<int64_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  double loss = 0, accuracy = 0, margin = 0;
  for (int64_t m = 0; m < micro_batches_per_epoch(static_cast<int64_t>(pairs.size()), batch_size); ++m) {
    const std::vector<int64_t> indices = micro_batch_indices(order, m, batch_size);
    const PreferenceLoss batch =
        batch_preference_loss(model, preference_batch(pairs, indices, data.max_length, data.pad_id), data);
    const auto n = static_cast<double>(indices.size());
    loss += batch.loss.item<double>() * n;
    accuracy += batch.accuracy * n;
    margin += batch.margin * n;
  }
  model.set_training(true);
  const auto n = static_cast<double>(pairs.size());
  if (data.loss == "reward")
    return {{"eval_loss", loss / n}, {"eval_accuracy", accuracy / n}, {"eval_margin", margin / n}};
  return {{"eval_loss", loss / n}, {"eval_rewards/accuracies", accuracy / n}, {"eval_rewards/margins", margin / n}};
}

TrainingSummary train_preference(TrainableModel& model, const PreferenceData& data, const TrainerOptions& options) {
  const TrainingParams& p = options.params;
  if (options.group && options.group->size() > 1)
    throw Error("trainer \"" + p.trainer + "\" runs in one process; data-parallel workers are not supported yet");
  if (data.train.empty()) throw Error(p.data_path + ": no preference pair to train on");
  Objective objective;
  objective.examples = static_cast<int64_t>(data.train.size());
  objective.description = log::cat(data.train.size(), " preference pairs (at most ", data.max_length, " tokens each)");
  objective.unit = "pairs";
  objective.weight = [](const std::vector<int64_t>&) { return 1.0; };  // a micro-batch's loss is its pairs' mean
  objective.tokens = [&](const std::vector<int64_t>& indices) {
    int64_t tokens = 0;
    for (const int64_t i : indices) tokens += pair_tokens(data.train[static_cast<size_t>(i)], data.max_length);
    return tokens;
  };
  objective.loss = [&](const std::vector<int64_t>& indices, MetricSums& sums) {
    PreferenceLoss batch =
        batch_preference_loss(model, preference_batch(data.train, indices, data.max_length, data.pad_id), data);
    for (const auto& [name, value] : batch.metrics) sums[name] += value;
    return batch.loss;
  };
  if (data.valid) objective.evaluate = [&] { return evaluate_preference(model, *data.valid, data, p.batch_size); };
  return run_loop(model, objective, data.fingerprint, options);
}

namespace {

TrainingSummary run_loop(TrainableModel& model, const Objective& objective, const std::string& fingerprint,
                         const TrainerOptions& options) {
  const TrainingParams& p = options.params;
  ProcessGroup* group = options.group;
  const int64_t world_size = group ? group->size() : 1, rank = group ? group->rank() : 0;
  const bool writer = rank == 0;  // of files and metrics
  const int64_t run_batch_size = p.batch_size * world_size;
  const int64_t blocks = objective.examples;
  const int64_t micro_per_epoch = micro_batches_per_epoch(blocks, run_batch_size);
  const int64_t steps_per_epoch = optimizer_steps_per_epoch(blocks, run_batch_size, p.gradient_accumulation);
  const int64_t total_steps = steps_per_epoch * p.epochs;
  const int64_t logging_steps = p.logging_steps > 0 ? p.logging_steps : automatic_logging_steps(blocks, p.batch_size);
  const int64_t save_total_limit = p.save_total_limit > 0 ? p.save_total_limit : 1;

  LearningRateSchedule schedule(p.scheduler, p.lr, total_steps, p.warmup_ratio);
  Optimizer optimizer(model.parameters, OptimizerOptions{p.optimizer, p.weight_decay});
  LossScaler scaler(p.mixed_precision.value_or("none") == "fp16");
  std::vector<at::Tensor> trainable;
  for (const auto& [name, tensor] : model.parameters) trainable.push_back(tensor);

  TrainerState state;
  state.fingerprint = fingerprint;
  state.world_size = world_size;
  std::string resume_folder = options.resume_from;
  if (resume_folder.empty() && options.resume) resume_folder = newest_checkpoint(p.project_name).value_or("");
  if (group) group->barrier();  // every worker has looked for a checkpoint before rank 0 may remove any
  if (!resume_folder.empty()) {
    state = load_checkpoint(resume_folder, optimizer);
    if (state.fingerprint != fingerprint) {
      throw Error(resume_folder + ": this checkpoint belongs to a run with other data or settings; use another "
                  "project_name or delete " + p.project_name + "/checkpoint-*");
    }
    if (state.world_size != world_size) {
      throw Error(log::cat(resume_folder, ": this checkpoint was written by a run of ", state.world_size,
                           " worker(s) and this run has ", world_size, "; resume with the same number of workers "
                           "(--nproc-per-node x --nnodes) or start afresh with --no-resume"));
    }
    scaler.restore(state.loss_scale, state.growth_tracker);
    if (schedule.reduces_on_plateau()) {
      if (!state.plateau) throw Error(resume_folder + "/trainer_state.json: no \"plateau\" position for scheduler "
                                      "reduce_lr_on_plateau; start afresh with --no-resume");
      schedule.restore(*state.plateau);
    }
    log::info("resuming from " + resume_folder + " at step " + std::to_string(state.global_step) + "/" +
              std::to_string(total_steps));
  } else if (const int64_t removed = writer ? remove_checkpoints(p.project_name) : 0; removed > 0) {
    log::warn(log::cat("starting afresh: removed ", removed, " checkpoint folder(s) of an earlier run in ",
                       p.project_name));
  }

  state.plateau = schedule.plateau();  // a checkpoint before the first evaluation carries it too

  std::unique_ptr<GradientReducer> reducer;
  if (group) {  // every worker starts from rank 0's parameters, as DDP does
    at::NoGradGuard no_grad;
    for (at::Tensor& parameter : trainable) group->broadcast(parameter, 0);
    reducer = std::make_unique<GradientReducer>(*group, trainable);
  }

  // A resumed run continues the metrics of the run it resumes; a fresh run starts them anew.
  std::optional<MetricsWriter> metrics;
  if (writer) {
    keep_metrics_through_step(p.project_name + "/metrics.jsonl", state.global_step);
    // "log": "tensorboard": the same numbers as TensorBoard scalars, in a run folder of this start's own.
    const std::string tensorboard_dir = p.log == "tensorboard" ? tensorboard_run_dir(p.project_name) : "";
    metrics.emplace(p.project_name + "/metrics.jsonl", tensorboard_dir);
    if (!tensorboard_dir.empty())
      log::info("TensorBoard events in " + tensorboard_dir + " (tensorboard --logdir " + p.project_name + "/runs)");
  }
  log::info(log::cat("training: ", objective.description, ", ", p.epochs, " epoch(s), ", total_steps,
                     " optimizer steps of ", p.batch_size, " x ", p.gradient_accumulation, " ", objective.unit,
                     world_size > 1 ? log::cat(" x ", world_size, " workers") : std::string()));
  ProgressBar progress("train", total_steps, "step");
  progress.advance(state.global_step);
  StopSignals signals;
  TrainingSummary summary;
  summary.total_steps = total_steps;
  auto save = [&] {
    state.loss_scale = scaler.scale();
    state.growth_tracker = scaler.growth_tracker();
    return save_checkpoint(p.project_name, state, optimizer, model.save_adapter, save_total_limit);
  };

  model.set_training(true);
  int64_t steps_this_run = 0, tokens_this_run = 0, order_epoch = -1, nonfinite_streak = 0;
  int64_t gpu_memory_peak = 0;  // of the samples taken after each step
  double last_loss = 0;
  std::vector<int64_t> order;
  const auto started = std::chrono::steady_clock::now();
  bool stop = false;
  int stop_signal = 0;  // SIGINT / SIGTERM received by this worker or, in a group, by any
  const std::unique_ptr<StepProfiler> profiler = StepProfiler::from_environment();
  while (state.epoch < p.epochs && !stop) {
    if (order_epoch != state.epoch) {
      order = epoch_block_order(blocks, p.seed, state.epoch);
      order_epoch = state.epoch;
    }
    // One optimizer step: its window of micro-batches, each loss divided by the window's summed weight (its
    // predicted tokens for blocks, of the whole group's micro-batches: every worker counts them, as it has the
    // whole order).
    const int64_t window = std::min(p.gradient_accumulation, micro_per_epoch - state.micro_batch);
    std::vector<std::vector<int64_t>> batches;
    double window_weight = 0;
    for (int64_t m = 0; m < window; ++m) {
      const std::vector<int64_t> run_batch = micro_batch_indices(order, state.micro_batch + m, run_batch_size);
      window_weight += objective.weight(run_batch);
      tokens_this_run += objective.tokens(run_batch);
      batches.push_back(worker_share(run_batch, rank, p.batch_size));
    }
    double step_loss = 0;
    MetricSums step_metrics;
    if (profiler) profiler->before_step(state.global_step + 1);
    for (size_t m = 0; m < batches.size(); ++m) {
      if (reducer) reducer->prepare_for_backward(/*reduce=*/m + 1 == batches.size());
      if (batches[m].empty()) continue;
      at::Tensor loss = objective.loss(batches[m], step_metrics) / window_weight;
      scaler.scale_loss(loss).backward();
      step_loss += loss.item<double>();
    }
    if (group) {
      reducer->finish();  // every worker now holds the group's summed gradients
      at::Tensor loss = at::tensor({step_loss}, at::kDouble);
      group->all_reduce_sum(loss);
      step_loss = loss.item<double>();
    }
    const bool found_inf = scaler.unscale_and_check(trainable);
    // A NaN/inf loss is the forward pass breaking down (it is summed in fp32, before any loss scaling), so
    // it is skipped in every precision and counts toward max_nonfinite_steps; so do inf/nan gradients when
    // no loss scale could have caused them.
    const bool nonfinite = !std::isfinite(step_loss) || (found_inf && !scaler.enabled());
    const bool skip = found_inf || nonfinite;
    nonfinite_streak = nonfinite ? nonfinite_streak + 1 : 0;
    double grad_norm = std::nan("");
    const double lr = schedule.lr_at(state.scheduler_step);
    if (!skip) {
      grad_norm = clip_gradient_norm(trainable, p.max_grad_norm > 0 ? p.max_grad_norm : INFINITY);
      optimizer.step(lr);
      ++state.scheduler_step;
    } else if (nonfinite) {
      ++state.skipped_steps;
      log::warn(log::cat("step ", state.global_step + 1, ": loss ", step_loss, found_inf ? ", inf/nan gradients" : "",
                         "; step skipped (", nonfinite_streak, " in a row)"));
    } else {
      ++state.skipped_steps;
      log::warn(log::cat("step ", state.global_step + 1, ": inf/nan gradients at loss scale ", scaler.scale(),
                         "; step skipped, scale halved"));
    }
    scaler.update(found_inf);
    optimizer.zero_grad();
    ++state.global_step;
    ++steps_this_run;
    if (profiler) profiler->after_step(state.global_step);
    if (state.global_step == 1) state.first_loss = step_loss;
    last_loss = step_loss;
    state.micro_batch += window;
    const bool epoch_done = state.micro_batch >= micro_per_epoch;
    if (epoch_done) {  // the state (and a checkpoint of it) points at the next epoch's start
      ++state.epoch;
      state.micro_batch = 0;
    }

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double tokens_per_second = seconds > 0 ? static_cast<double>(tokens_this_run) / seconds : 0;
    nlohmann::json record = {{"step", state.global_step},
                             {"epoch", static_cast<double>(state.global_step) / static_cast<double>(steps_per_epoch)},
                             {"loss", step_loss},
                             {"lr", lr},
                             {"grad_norm", std::isfinite(grad_norm) ? nlohmann::json(grad_norm) : nlohmann::json()},
                             {"tokens_per_second", tokens_per_second},
                             {"elapsed_seconds", seconds},
                             {"memory_bytes", resident_memory_bytes()},
                             {"loss_scale", scaler.scale()},
                             {"skipped", skip}};
    for (const auto& [name, sum] : step_metrics) record[name] = sum / static_cast<double>(batches.size());
    // The bar itself shows the resident memory; on a GPU the status adds the device's, which is what runs out.
    std::string gpu_status;
    if (model.device.is_cuda()) {
      gpu_memory_peak = std::max(gpu_memory_peak, gpu_memory_in_use_bytes(model.device));
      record["gpu_memory_bytes"] = gpu_memory_peak;
      gpu_status = " | gpu " + format_count(static_cast<double>(gpu_memory_peak)) + "B";
    }
    if (metrics) metrics->write(record);
    progress.set_status(log::cat("loss ", step_loss, " | lr ", lr, " | ", format_count(tokens_per_second), " tok/s",
                                 gpu_status));
    progress.advance();
    if (state.global_step % logging_steps == 0) {
      log::info(log::cat("step ", state.global_step, "/", total_steps, ": loss ", step_loss, ", lr ", lr,
                         ", grad_norm ", grad_norm, ", ", static_cast<int64_t>(tokens_per_second), " tok/s"));
    }
    if (options.max_nonfinite_steps > 0 && nonfinite_streak >= options.max_nonfinite_steps)
      throw nonfinite_stop(state.global_step, nonfinite_streak, p.project_name, scaler.enabled());
    // eval_strategy "epoch": after each epoch; "steps": every logging_steps (AutoTrain sets eval_steps to it).
    const bool evaluate_now =
        objective.evaluate && ((p.eval_strategy == "epoch" && epoch_done) ||
                               (p.eval_strategy == "steps" && state.global_step % logging_steps == 0));
    if (evaluate_now) {
      nlohmann::json eval = objective.evaluate();
      summary.eval_loss = eval["eval_loss"].get<double>();
      std::string said;
      for (const auto& [name, value] : eval.items())
        said += log::cat(said.empty() ? "" : ", ", name, " ", value.dump());
      log::info(log::cat("step ", state.global_step, "/", total_steps, " (epoch ",
                         static_cast<double>(state.global_step) / static_cast<double>(steps_per_epoch), "): ", said));
      eval["step"] = state.global_step;
      eval["epoch"] = state.epoch;
      if (metrics) metrics->write(eval);
      // reduce_lr_on_plateau: the Trainer steps it with eval_loss here, so the next step takes the new rate.
      const double rate = schedule.lr_at(state.scheduler_step);
      if (schedule.after_evaluation(*summary.eval_loss)) {
        log::info(log::cat("eval_loss has not improved on ", *schedule.plateau()->best, " for ", kPlateauPatience + 1,
                           " evaluations: lr ", rate, " -> ", schedule.lr_at(state.scheduler_step)));
      }
      state.plateau = schedule.plateau();
    }

    // A signal to any worker stops them all at this step.
    stop_signal = signals.received();
    if (group) {
      at::Tensor received = at::tensor({static_cast<int64_t>(stop_signal)}, at::kLong);
      group->all_reduce_max(received);
      stop_signal = static_cast<int>(received.item<int64_t>());
    }
    stop = stop_signal != 0 || (options.stop_after_steps > 0 && steps_this_run >= options.stop_after_steps);
    const bool periodic = options.save_steps > 0 ? state.global_step % options.save_steps == 0 : epoch_done;
    // A checkpoint is never taken at a step whose loss was NaN/inf: the newest one stays the last good one.
    if (writer && (periodic || stop || state.global_step == total_steps) && !nonfinite) log::info("checkpoint " + save());
  }
  progress.finish();
  model.set_training(false);

  summary.steps = state.global_step;
  summary.skipped_steps = state.skipped_steps;
  summary.first_loss = state.first_loss;
  summary.last_loss = last_loss;
  summary.output_folder = p.project_name;
  if (state.global_step < total_steps) {
    summary.stopped_early = true;
    if (stop_signal != 0) {
      const int signal = stop_signal;
      if (!writer) throw Error("", 128 + signal);  // rank 0 says it for the job
      throw Error(log::cat("interrupted by ", signal == SIGINT ? "SIGINT" : "SIGTERM", " at step ", state.global_step,
                           "/", total_steps, "; the checkpoint in ", p.project_name,
                           " holds the state: rerun the same command to resume"),
                  128 + signal);
    }
    return summary;
  }
  if (!writer) return summary;
  model.save_adapter(p.project_name);
  write_loss_curve_svg(metrics->path(), p.project_name + "/loss_curve.svg");
  return summary;
}

}  // namespace

}  // namespace autotrain
