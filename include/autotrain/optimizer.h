// The optimizers of AutoTrain's `optimizer` key, written out so their state is ours to checkpoint and
// their arithmetic is torch.optim's single-tensor path op for op (torch/optim/adam.py, sgd.py): the same
// update to the last bit on the CPU, which the resume test and the Trainer+PEFT comparison rely on. The
// parameters are updated together by libtorch's multi-tensor (_foreach) operations, which on the CPU are
// those single-tensor operations and on a GPU one kernel per operation for all parameters.
//   adamw_torch, adamw: torch.optim.AdamW  (decoupled weight decay: p *= 1 - lr*wd)
//   adamw_torch_fused, paged_adamw_32bit: the same update (torch's fused AdamW; bitsandbytes' 32-bit AdamW, whose
//                       step lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps * sqrt(bc2)) is AdamW's rearranged)
//   adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit: run as 32-bit AdamW (config validation warns): bitsandbytes
//                       keeps the moments of tensors of 4096+ values in 8 bits, we keep them in fp32
//   adam:               torch.optim.Adam   (L2 weight decay added to the gradient)
//   sgd:                torch.optim.SGD    (no momentum, as transformers' optim="sgd")
// Betas (0.9, 0.999) and eps 1e-8 are transformers' TrainingArguments defaults.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace autotrain {

struct OptimizerOptions {
  std::string name = "adamw_torch";
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// torch.nn.utils.clip_grad_norm_ (norm 2) with its multi-tensor path: the norm of every defined gradient of
// `parameters` together, each scaled by min(1, max_norm / (norm + 1e-6)); returns the norm before
// clipping (0 with no gradients). max_norm = inf only measures. One read of the norm from the device.
double clip_gradient_norm(const std::vector<at::Tensor>& parameters, double max_norm);

class Optimizer {
 public:
  // `parameters` are the trainable tensors (fp32 leaves with requires_grad), named for checkpoints.
  Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerOptions options);

  // One update of every parameter with a defined gradient, at learning rate `lr`.
  void step(double lr);
  void zero_grad();

  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return parameters_; }
  int64_t steps_taken() const { return steps_; }

  // The state as named tensors (exp_avg / exp_avg_sq per parameter, plus the step count) for a
  // checkpoint, and its restoration; load_state throws Error naming a missing or misshapen tensor.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& source);

 private:
  enum class Kind { adamw, adam, sgd };
  Kind kind_;
  OptimizerOptions options_;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace autotrain
