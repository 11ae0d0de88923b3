// LoRA on a frozen linear layer, as PEFT defines it (peft.tuners.lora.layer.Linear):
//   y = base(x) + scaling * B(A(dropout(x))),  scaling = alpha / r  (rsLoRA: alpha / sqrt(r))
// A (r, in) kaiming-uniform with a = sqrt(5) and B (out, r) zeros, so training starts from the base model.
// A and B are fp32 parameters whatever the compute dtype. As PEFT under torch.autocast (AutoTrain's mixed
// precision), a bf16 / fp16 x is multiplied in its own dtype: A and B are cast to it for each use, the
// products and the scaling are rounded to it, and their gradients come back to fp32 through the casts. An
// fp32 x stays in fp32. Dropout, when on, applies to x cast to fp32 (PEFT casts x to A's dtype first).
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

// The dtype LoRA multiplies in for an input x with fp32 adapter weights: x's when it is bf16 / fp16 (the
// autocast dtype of a mixed-precision run), fp32 otherwise.
at::ScalarType lora_compute_dtype(const at::Tensor& x);

class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(std::shared_ptr<const FrozenLinear> base, const LoraOptions& options);

  // x (..., in) -> (..., out) in x's dtype.
  at::Tensor forward(const at::Tensor& x);
  // A kaiming-uniform (a = sqrt(5)) drawn from libtorch's default generator, B zeros.
  void reset_parameters();

  // What A multiplies: x itself, or while dropout is active dropout(x cast to the adapters' dtype).
  at::Tensor lora_input(const at::Tensor& x) const;

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
// tests/lora_test.cpp), not the same rounding: sums in a different order, and with a base of the compute
// dtype scaling * XA_i . B_i^T is added to it inside the GEMM (one rounding). Needs dropout off (0, or
// evaluation), because separate dropout masks would need separate reads of x.
//   x (..., in); bases[i] (..., out_i) = the frozen projection i of x; returns (..., out_i) in bases[i]'s dtype.
std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<const LoraLinearImpl*>& loras);
// The same with the LoRA weights given: as[i] (r_i, in) and bs[i] (out_i, r_i) in fp32, scalings[i]. The
// compute dtype is lora_compute_dtype's, as for the separate layers.
std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<at::Tensor>& as, const std::vector<at::Tensor>& bs,
                                   const std::vector<double>& scalings);

// One LoRA layer through fused_lora (n = 1): the base output, then (with dropout on) the layer's dropout of x,
// drawn as its forward draws it, and the update added into the base output inside the GEMM. Equal to
// lora.forward(x) but for the rounding of that addition (tests/lora_test.cpp).
at::Tensor lora_forward_fused(const LoraLinearImpl& lora, const at::Tensor& x);

// Whether LoRA layers take the fused path: q/k/v together when none has dropout on (one read of x), every
// other projection, and q/k/v with dropout, alone (lora_forward_fused: fewer kernels than the layer's
// matmul, scale and add). On CUDA by default, not on the CPU (where the separate layers are the reference);
// AUTOTRAIN_FUSED_LORA=1 / 0 forces it on / off everywhere (for tests and benchmarks).
bool use_fused_lora(const at::Tensor& x);

}  // namespace autotrain
