// Dynamic loss scaling for fp16 training, step for step as torch.amp.GradScaler with its defaults:
// start at 2^16; an optimizer step whose gradients hold inf/nan is skipped and the scale halves; after
// 2000 clean steps in a row the scale doubles.
#pragma once

#include <cstdint>
#include <vector>

namespace autotrain {

class LossScaler {
 public:
  explicit LossScaler(bool enabled, double initial_scale = 65536.0, double growth_factor = 2.0,
                      double backoff_factor = 0.5, int64_t growth_interval = 2000);

  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // loss * scale (the loss itself when disabled).
  at::Tensor scale_loss(const at::Tensor& loss) const;
  // Divides the gradients by the scale in place and reports whether any is inf or nan (also when
  // disabled: a non-finite gradient is never applied).
  bool unscale_and_check(const std::vector<at::Tensor>& parameters) const;
  // After each optimizer step (taken or skipped): the scale's update.
  void update(bool found_inf);
  int64_t growth_tracker() const { return growth_tracker_; }

  // For checkpoints.
  void restore(double scale, int64_t growth_tracker);

 private:
  bool enabled_;
  double scale_, growth_factor_, backoff_factor_;
  int64_t growth_interval_, growth_tracker_ = 0;
};

}  // namespace autotrain
