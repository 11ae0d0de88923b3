#include "autotrain/lora.h"

#include <cmath>

namespace autotrain {

double lora_scaling(const LoraOptions& options) {
  double r = static_cast<double>(options.r);
  return options.rslora ? options.alpha / std::sqrt(r) : options.alpha / r;
}

LoraLinearImpl::LoraLinearImpl(std::shared_ptr<const FrozenLinear> base, const LoraOptions& options)
    : base_(std::move(base)), scaling_(lora_scaling(options)), dropout_(options.dropout) {
  lora_A = register_parameter("lora_A", at::empty({options.r, base_->in_features()}, at::kFloat));
  lora_B = register_parameter("lora_B", at::empty({base_->out_features(), options.r}, at::kFloat));
  reset_parameters();
}

void LoraLinearImpl::reset_parameters() {
  at::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(lora_A, std::sqrt(5.0));
  lora_B.zero_();
}

at::Tensor LoraLinearImpl::forward(const at::Tensor& x) {
  at::Tensor result = base_->forward(x);
  at::Tensor h = x.to(lora_A.scalar_type());
  if (dropout_ > 0 && is_training()) h = at::dropout(h, dropout_, /*train=*/true);
  at::Tensor update = at::linear(at::linear(h, lora_A), lora_B) * scaling_;
  return result + update.to(result.scalar_type());
}

}  // namespace autotrain
