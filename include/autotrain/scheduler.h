// Learning-rate schedules, step for step the same as transformers' get_scheduler() with warmup
// (transformers/optimization.py): the learning rate of optimizer step s (0-based) is lr * factor(s).
#pragma once

#include <cstdint>
#include <string>

namespace autotrain {

class LearningRateSchedule {
 public:
  // `name`: linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup.
  // Warmup steps are ceil(total_steps * warmup_ratio), as transformers' TrainingArguments computes them.
  LearningRateSchedule(const std::string& name, double lr, int64_t total_steps, double warmup_ratio);

  double lr_at(int64_t step) const { return lr_ * factor(step); }
  double factor(int64_t step) const;
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }

 private:
  enum class Kind { linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup };
  Kind kind_;
  double lr_;
  int64_t total_steps_, warmup_steps_;
};

// Warmup steps for a ratio: ceil(total_steps * warmup_ratio).
int64_t warmup_steps_for(int64_t total_steps, double warmup_ratio);

}  // namespace autotrain
