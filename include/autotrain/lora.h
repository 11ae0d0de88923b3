// LoRA on a frozen linear layer, as PEFT defines it (peft.tuners.lora.layer.Linear):
//   y = base(x) + scaling * B(A(dropout(x))),  scaling = alpha / r  (rsLoRA: alpha / sqrt(r))
// A (r, in) kaiming-uniform with a = sqrt(5) and B (out, r) zeros, so training starts from the base model.
// A and B are fp32 parameters whatever the compute dtype (PEFT casts x to A's dtype).
#pragma once

#include <memory>
#include <vector>

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
  bool dropout_active() const { return dropout_ > 0 && is_training(); }

  at::Tensor lora_A, lora_B;

 private:
  std::shared_ptr<const FrozenLinear> base_;
  double scaling_, dropout_;
};
TORCH_MODULE(LoraLinear);

}  // namespace autotrain

namespace autotrain {

// LoRA on several projections of the same input (q, k and v of an attention layer), fused: one GEMM
// x . [A_1; ...; A_n]^T reads x once for every A, each B up-projection is added into its base output,
// and the backward gives dA for all of them from one GEMM dXA^T . x and the LoRA part of dx from one
// GEMM dXA . [A_1; ...; A_n]. Same mathematics as n separate LoraLinear layers (which are the reference,
// tests/lora_test.cpp), not the same rounding: fp32 sums in a different order. Needs dropout off (0, or
// evaluation), because separate dropout masks would need separate reads of x.
//   x (..., in); bases[i] (..., out_i) = the frozen projection i of x; returns (..., out_i) in bases[i]'s dtype.
std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<const LoraLinearImpl*>& loras);
// The same with the LoRA weights given: as[i] (r_i, in) and bs[i] (out_i, r_i) in fp32, scalings[i].
std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<at::Tensor>& as, const std::vector<at::Tensor>& bs,
                                   const std::vector<double>& scalings);

// Whether the fused path is used for a layer's q/k/v when each has LoRA and dropout is off: on CUDA by
// default, not on the CPU (where the separate layers are the reference); AUTOTRAIN_FUSED_QKV_LORA=1 / 0
// forces it on / off everywhere (for tests and benchmarks).
bool use_fused_qkv_lora(const at::Tensor& x);

}  // namespace autotrain
