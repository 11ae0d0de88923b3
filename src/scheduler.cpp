#include "autotrain/scheduler.h"

#include <algorithm>
#include <cmath>

#include "autotrain/error.h"

namespace autotrain {

namespace {
// transformers' defaults for the schedules that take extra arguments.
constexpr double kCosineCycles = 0.5;           // get_cosine_schedule_with_warmup
constexpr double kRestartCycles = 1.0;          // get_cosine_with_hard_restarts_schedule_with_warmup
constexpr double kPolynomialLrEnd = 1e-7;       // get_polynomial_decay_schedule_with_warmup
constexpr double kPolynomialPower = 1.0;
constexpr double kInverseSqrtTimescale = 10000;  // get_inverse_sqrt_schedule without warmup (else the warmup)
// torch.optim.lr_scheduler.ReduceLROnPlateau's defaults (transformers passes none).
constexpr double kPlateauFactor = 0.1, kPlateauThreshold = 1e-4, kPlateauEps = 1e-8;
}  // namespace

int64_t warmup_steps_for(int64_t total_steps, double warmup_ratio) {
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
}

LearningRateSchedule::LearningRateSchedule(const std::string& name, double lr, int64_t total_steps,
                                           double warmup_ratio)
    : lr_(lr), total_steps_(total_steps), warmup_steps_(warmup_steps_for(total_steps, warmup_ratio)) {
  if (name == "linear") kind_ = Kind::linear;
  else if (name == "cosine") kind_ = Kind::cosine;
  else if (name == "cosine_with_restarts") kind_ = Kind::cosine_with_restarts;
  else if (name == "polynomial") kind_ = Kind::polynomial;
  else if (name == "constant") kind_ = Kind::constant;
  else if (name == "constant_with_warmup") kind_ = Kind::constant_with_warmup;
  else if (name == "inverse_sqrt") kind_ = Kind::inverse_sqrt;
  else if (name == "reduce_lr_on_plateau") kind_ = Kind::reduce_lr_on_plateau;
  else throw config_error("scheduler \"" + name + "\" is not supported");
  if (kind_ == Kind::polynomial && kPolynomialLrEnd > lr)
    throw config_error("scheduler \"polynomial\" decays to 1e-7: \"lr\" must be larger than that");
  if (kind_ == Kind::reduce_lr_on_plateau) {
    warmup_steps_ = 0;
    plateau_ = PlateauState{lr, std::nullopt, 0};
  }
}

bool LearningRateSchedule::after_evaluation(double eval_loss) {
  if (!plateau_) return false;
  PlateauState& s = *plateau_;
  // mode "min", threshold_mode "rel": better when below best * (1 - threshold), the best starting at infinity; a
  // NaN loss never is.
  if (eval_loss < s.best.value_or(INFINITY) * (1.0 - kPlateauThreshold)) {
    s.best = eval_loss;
    s.bad_evaluations = 0;
  } else {
    ++s.bad_evaluations;
  }
  if (s.bad_evaluations <= kPlateauPatience) return false;
  s.bad_evaluations = 0;
  const double reduced = s.lr * kPlateauFactor;  // max(old * factor, min_lr 0)
  if (s.lr - reduced <= kPlateauEps) return false;  // torch leaves a rate this small as it is
  s.lr = reduced;
  return true;
}

double LearningRateSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  const double warmup = static_cast<double>(warmup_steps_);
  const double total = static_cast<double>(total_steps_);
  if (kind_ == Kind::constant) return 1.0;
  if (step < warmup_steps_) {
    // constant_with_warmup divides by max(1.0, w), the others by max(1, w): the same number.
    return s / std::max(1.0, warmup);
  }
  const double progress = (s - warmup) / std::max(1.0, total - warmup);
  switch (kind_) {
    case Kind::inverse_sqrt: {
      const double timescale = warmup_steps_ > 0 ? warmup : kInverseSqrtTimescale;
      return 1.0 / std::sqrt((s + (timescale - warmup)) / timescale);
    }
    case Kind::constant_with_warmup:
      return 1.0;
    case Kind::linear:
      return std::max(0.0, (total - s) / std::max(1.0, total - warmup));
    case Kind::cosine:
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * kCosineCycles * 2.0 * progress)));
    case Kind::cosine_with_restarts:
      if (progress >= 1.0) return 0.0;
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * std::fmod(kRestartCycles * progress, 1.0))));
    case Kind::polynomial: {
      if (step > total_steps_) return kPolynomialLrEnd / lr_;
      const double lr_range = lr_ - kPolynomialLrEnd;
      const double remaining = 1.0 - (s - warmup) / (total - warmup);
      return (lr_range * std::pow(remaining, kPolynomialPower) + kPolynomialLrEnd) / lr_;
    }
    case Kind::constant:
    case Kind::reduce_lr_on_plateau:  // lr_at reads the plateau's rate
      break;
  }
  return 1.0;
}

}  // namespace autotrain
