// Learning-rate schedules, step for step the same as transformers' get_scheduler() with warmup
// (transformers/optimization.py): the learning rate of optimizer step s (0-based) is lr * factor(s); and
// reduce_lr_on_plateau, torch's ReduceLROnPlateau as the Trainer drives it (stepped with eval_loss after each
// evaluation).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace autotrain {

// torch's ReduceLROnPlateau patience (its default): the rate is cut after more than this many evaluations in a
// row without improvement.
inline constexpr int64_t kPlateauPatience = 10;

// reduce_lr_on_plateau's position, which a checkpoint carries: the learning rate now, the best eval_loss so far
// (none before the first evaluation) and the evaluations since it that did not improve on it.
struct PlateauState {
  double lr = 0;
  std::optional<double> best;
  int64_t bad_evaluations = 0;
};

class LearningRateSchedule {
 public:
  // `name`: linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt,
  // reduce_lr_on_plateau. Warmup steps are ceil(total_steps * warmup_ratio), as transformers' TrainingArguments
  // computes them; reduce_lr_on_plateau has no warmup (get_scheduler ignores it for that schedule).
  LearningRateSchedule(const std::string& name, double lr, int64_t total_steps, double warmup_ratio);

  // The rate of optimizer step `step`; for reduce_lr_on_plateau the rate now, whatever the step.
  double lr_at(int64_t step) const { return plateau_ ? plateau_->lr : lr_ * factor(step); }
  double factor(int64_t step) const;
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }

  // reduce_lr_on_plateau only: takes an evaluation's eval_loss, as torch's ReduceLROnPlateau.step(metric) with
  // its defaults (mode min, factor 0.1, patience 10, threshold 1e-4 relative, cooldown 0, min_lr 0, eps 1e-8):
  // the rate is multiplied by 0.1 once more than 10 evaluations in a row have not been 1e-4 below the best.
  // Returns whether the rate changed.
  bool after_evaluation(double eval_loss);
  bool reduces_on_plateau() const { return plateau_.has_value(); }
  const std::optional<PlateauState>& plateau() const { return plateau_; }
  void restore(const PlateauState& state) { plateau_ = state; }

 private:
  enum class Kind {
    linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt,
    reduce_lr_on_plateau
  };
  Kind kind_;
  double lr_;
  int64_t total_steps_, warmup_steps_;
  std::optional<PlateauState> plateau_;
};

// Warmup steps for a ratio: ceil(total_steps * warmup_ratio).
int64_t warmup_steps_for(int64_t total_steps, double warmup_ratio);

}  // namespace autotrain
