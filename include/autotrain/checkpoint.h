// Training checkpoints: project_name/checkpoint-N/ holds everything a run needs to continue as if never
// stopped — the adapter (PEFT files, usable on their own), the optimizer's moments, the trainer's
// position (epoch, micro-batch, scheduler step), the fp16 loss scaler and the CPU RNG state (dropout),
// plus the GPU's RNG state when the parameters live on a GPU (dropout draws there).
// A checkpoint is written into checkpoint-N.partial/ and renamed: a folder named checkpoint-N is complete.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autotrain/optimizer.h"
#include "autotrain/scheduler.h"

namespace autotrain {

struct TrainerState {
  int64_t global_step = 0;     // optimizer steps done (taken or skipped)
  int64_t scheduler_step = 0;  // optimizer steps taken: the schedule's position
  int64_t skipped_steps = 0;
  int64_t epoch = 0;           // the epoch in progress
  int64_t micro_batch = 0;     // the next micro-batch of that epoch
  double loss_scale = 65536.0;
  int64_t growth_tracker = 0;
  double first_loss = 0;
  std::string fingerprint;     // the run's data + settings; a checkpoint resumes only the same run
  int64_t world_size = 1;      // workers of the run (micro_batch counts micro-batches of world_size x batch_size)
  std::optional<PlateauState> plateau;  // scheduler reduce_lr_on_plateau's position
};

// Writes checkpoint-<global_step> into `project`, then removes the oldest checkpoints beyond `keep`
// (save_total_limit; at least the new one stays). Returns the folder.
std::string save_checkpoint(const std::string& project, const TrainerState& state, const Optimizer& optimizer,
                            const std::function<void(const std::string& folder)>& save_adapter, int64_t keep);

// The complete checkpoint with the highest step in `project`, if any.
std::optional<std::string> newest_checkpoint(const std::string& project);

// Removes every checkpoint-N (complete or partial) in `project`; returns how many. A run started afresh
// in a project folder clears them, so a later resume never picks up the older run's state.
int64_t remove_checkpoints(const std::string& project);

// Restores the parameters (from the adapter file), the optimizer and the CPU RNG (and a GPU's, when the
// parameters live on one and the checkpoint holds it) from `folder`, and returns the trainer state. Throws
// Error naming the file when something is missing or does not fit.
TrainerState load_checkpoint(const std::string& folder, Optimizer& optimizer);

}  // namespace autotrain
