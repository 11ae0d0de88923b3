#include "autotrain/loss_scaler.h"

namespace autotrain {

LossScaler::LossScaler(bool enabled, double initial_scale, double growth_factor, double backoff_factor,
                       int64_t growth_interval)
    : enabled_(enabled),
      scale_(initial_scale),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {}

at::Tensor LossScaler::scale_loss(const at::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale_and_check(const std::vector<at::Tensor>& parameters) const {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return false;
  // As GradScaler.unscale_: one multi-tensor operation multiplies every gradient by the fp32 reciprocal of
  // the scale (1 when scaling is off) and flags any NaN/inf; one read of the flag.
  const auto options = grads.front().options().dtype(at::kFloat);
  at::Tensor found_inf = at::zeros({1}, options);
  at::Tensor inverse = at::full({1}, static_cast<float>(1.0 / scale()), options);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inverse);
  return found_inf.item<float>() != 0;
}

void LossScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    scale_ *= backoff_factor_;
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ == growth_interval_) {
    scale_ *= growth_factor_;
    growth_tracker_ = 0;
  }
}

void LossScaler::restore(double scale, int64_t growth_tracker) {
  scale_ = scale;
  growth_tracker_ = growth_tracker;
}

}  // namespace autotrain
