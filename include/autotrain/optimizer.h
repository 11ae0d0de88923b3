// The optimizers of AutoTrain's `optimizer` key (transformers' TrainingArguments.optim names), written out so their
// state is ours to checkpoint and their arithmetic is op for op what transformers' Trainer builds for that name on
// the CPU (torch.optim's single-tensor path, transformers' Adafactor, bitsandbytes' CPU ops): the same update to
// the last bit, which the optimizer oracle test, the resume test and the Trainer+PEFT comparison rely on. Where the
// reference updates parameters one by one with the same elementwise operations, we update them together with
// libtorch's multi-tensor (_foreach) operations, which on the CPU are those operations and on a GPU one kernel per
// operation for all parameters.
//   adamw_torch, adamw:     torch.optim.AdamW  (decoupled weight decay: p *= 1 - lr*wd)
//   adamw_torch_fused, paged_adamw_32bit: AdamW's update (torch's fused AdamW; bitsandbytes' 32-bit AdamW, whose
//                           step lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps * sqrt(bc2)) is AdamW's rearranged), run
//                           as adamw_torch: equal up to their rounding
//   adam:                   torch.optim.Adam   (L2 weight decay added to the gradient)
//   sgd:                    torch.optim.SGD    (no momentum, as transformers' optim="sgd")
//   adagrad:                torch.optim.Adagrad (eps 1e-10, L2 weight decay)
//   rmsprop:                torch.optim.RMSprop (alpha 0.99, eps 1e-8, L2 weight decay)
//   rmsprop_bnb, rmsprop_bnb_32bit: bitsandbytes' 32-bit RMSprop (the same, rounded as p - lr * (g / (sqrt(v) + eps)))
//   lion_32bit, paged_lion_32bit: bitsandbytes' 32-bit Lion with transformers' betas (0.9, 0.999): decoupled weight
//                           decay, p -= lr * sign(beta1 m + (1 - beta1) g), then m = beta2 m + (1 - beta2) g
//   adafactor:              transformers' Adafactor as the Trainer makes it (lr given, scale_parameter and
//                           relative_step off, no first moment): factored second moments for matrices
//   adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit, lion_8bit, paged_lion_8bit, rmsprop_bnb_8bit: run as their 32-bit
//                           update (config validation warns): bitsandbytes keeps the moments of tensors of 4096+
//                           values in 8 bits, we keep them in fp32 (LoRA's are small)
// Betas (0.9, 0.999) and eps 1e-8 are transformers' TrainingArguments defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace autotrain {

// Every `optimizer` name above, in the order they are listed to a user.
const std::vector<std::string>& optimizer_names();
// For a name run as another's update because bitsandbytes would keep its moments in 8 bits, that other name
// (adamw_8bit -> adamw_torch); nullopt for the others.
std::optional<std::string> optimizer_runs_as_32bit(const std::string& name);
// Bytes of state `name` keeps for a rows x cols matrix: 8 per value for AdamW, 4 for Lion, RMSprop and Adagrad,
// none for SGD, and 4 per row and per column for Adafactor.
int64_t optimizer_state_bytes(const std::string& name, int64_t rows, int64_t cols);

// The update an `optimizer` name runs (defined in src/optimizer.cpp, with its table of names).
enum class OptimizerUpdate : uint8_t;

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

  // The state as named tensors ("<parameter>.<slot>", slots named as the reference optimizer names them: exp_avg
  // and exp_avg_sq for Adam, square_avg, sum, exp_avg for Lion, exp_avg_sq_row and exp_avg_sq_col for Adafactor;
  // plus the step count) for a checkpoint, and its restoration; load_state throws Error naming a missing or
  // misshapen tensor, and the optimizer when the state is another optimizer's.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& source);

 private:
  // The parameters with a gradient, with their state slots: slot[k][j] is slot k of params[j].
  struct Batch {
    std::vector<at::Tensor> params, grads;
    std::vector<std::vector<at::Tensor>> slot;
  };
  Batch with_gradients() const;
  void adam_step(Batch& b, double lr);
  void adafactor_step(double lr);

  OptimizerUpdate kind_;
  OptimizerOptions options_;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
  // Per parameter, its state tensors by slot name (the same slots for every parameter but Adafactor's vectors).
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> state_;
  int64_t steps_ = 0;
};

}  // namespace autotrain
