// LoRA on a frozen linear layer, as PEFT defines it (peft.tuners.lora.layer.Linear):
//   y = base(x) + scaling * B(A(dropout(x))),  scaling = alpha / r  (rsLoRA: alpha / sqrt(r))
// A (r, in) kaiming-uniform with a = sqrt(5) and B (out, r) zeros, so training starts from the base model.
// A and B are fp32 parameters whatever the compute dtype (PEFT casts x to A's dtype).
#pragma once

#include <memory>

#include "autotrain/frozen_linear.h"

namespace autotrain {

struct LoraOptions {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.05;
  bool rslora = false;
};

double lora_scaling(const LoraOptions& options);

class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(std::shared_ptr<const FrozenLinear> base, const LoraOptions& options);

  // x (..., in) -> (..., out) in x's dtype.
  at::Tensor forward(const at::Tensor& x);
  // A kaiming-uniform (a = sqrt(5)) drawn from libtorch's default generator, B zeros.
  void reset_parameters();

  const FrozenLinear& base() const { return *base_; }
  double scaling() const { return scaling_; }

  at::Tensor lora_A, lora_B;

 private:
  std::shared_ptr<const FrozenLinear> base_;
  double scaling_, dropout_;
};
TORCH_MODULE(LoraLinear);

}  // namespace autotrain
