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
  bool found_inf = false;
  // GradScaler multiplies by the fp32 reciprocal of the scale.
  const float inverse = static_cast<float>(1.0 / scale());
  for (const auto& p : parameters) {
    at::Tensor g = p.grad();
    if (!g.defined()) continue;
    if (enabled_) g.mul_(inverse);
    if (!found_inf && !at::isfinite(g).all().item<bool>()) found_inf = true;
  }
  return found_inf;
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
